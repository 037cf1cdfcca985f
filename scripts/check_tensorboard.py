#!/usr/bin/env python3
"""Check a run folder's TensorBoard event files with TensorBoard's own readers (by hand, not
by cargo test).

Command (from the repository root; needs pip `tensorboard`, which brings numpy; `.ci/run`
runs it on a smoke run and its resume):

    python3 scripts/check_tensorboard.py RUN_DIR [RUN_DIR ...]

A RUN_DIR is a folder of `sdpo train` (with `metrics.jsonl`); a folder above run folders (a
`--compare-grpo` run, `runs/`) is searched for them. For each run folder:

1. every `events.out.tfevents.*` file in it is read with TensorBoard's record reader
   (`event_file_loader.LegacyEventFileLoader`: TFRecord framing, CRC-32C checked), the first
   event must be `file_version: "brain.Event:2"`, and every (scalar tag, step) must appear
   exactly once;
2. the scalars equal `metrics.jsonl`'s values rounded to float32 (NaN where the JSON has
   null), step for step, with no step or tag missing or extra (`step` itself is the events'
   step, not a tag), and `eval/held_out_success` equals `eval.jsonl`'s evaluations;
3. TensorBoard's `EventAccumulator` (what the dashboard's loader builds) sees the same
   steps and values for every tag (a tag's steps are the rows of metrics.jsonl that have it:
   the teacher probe's metrics come every `teacher_probe_every` steps), and the text-plugin tag `config` whose last value is the
   folder's `config.ron` in a markdown code block.

Prints one line per run folder; exits with status 1 on any mismatch.
"""

import json
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
from tensorboard.backend.event_processing import event_accumulator, event_file_loader
from tensorboard.util import tensor_util

FILE_VERSION = "brain.Event:2"
EVAL_TAG = "eval/held_out_success"


def run_folders(path: Path):
    if (path / "metrics.jsonl").is_file():
        yield path
    for sub in sorted(p for p in path.iterdir() if p.is_dir()):
        if sub.name != "checkpoints":
            yield from run_folders(sub)


def f32(x):
    """A metrics.jsonl value as TensorBoard stores it (null is NaN)."""
    with np.errstate(over="ignore"):
        return float(np.float32(math.nan if x is None else x))


def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == b


def unfence(markdown: str) -> str:
    lines = markdown.split("\n")
    fence = lines[0]
    if len(lines) < 2 or not fence.startswith("```") or lines[-1] != fence:
        raise ValueError(f"not a fenced code block: {markdown[:60]!r}")
    return "\n".join(lines[1:-1])


def check(run: Path) -> list:
    errors = []
    files = sorted(p for p in run.iterdir() if "tfevents" in p.name and p.is_file())
    if not files:
        return [f"no event file in {run}"]
    rows = [json.loads(l) for l in (run / "metrics.jsonl").read_text().splitlines() if l.strip()]
    want = {}  # (tag, step) -> float32 value
    for row in rows:
        step = int(row["step"])
        for tag, value in row.items():
            if tag != "step":
                want[(tag, step)] = f32(value)
    # The held-out evaluations (eval.jsonl) are scalars too, under one tag.
    eval_log = run / "eval.jsonl"
    if eval_log.is_file():
        for line in eval_log.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                want[(EVAL_TAG, int(row["step"]))] = f32(row["held_out_success"])
    steps = [int(r["step"]) for r in rows]
    if len(set(steps)) != len(steps):
        errors.append(f"metrics.jsonl repeats steps: {steps}")

    # 1. Raw events, framing checked by TensorBoard's reader.
    seen = Counter()
    got = {}
    for path in files:
        events = list(event_file_loader.LegacyEventFileLoader(str(path)).Load())
        if not events or events[0].file_version != FILE_VERSION:
            errors.append(f"{path.name}: first event is not file_version {FILE_VERSION!r}")
        for e in events:
            for v in e.summary.value:
                if v.WhichOneof("value") == "simple_value":
                    seen[(v.tag, e.step)] += 1
                    got[(v.tag, e.step)] = v.simple_value
    twice = sorted(k for k, n in seen.items() if n > 1)
    if twice:
        errors.append(f"(tag, step) written more than once: {twice[:5]} ({len(twice)} in all)")

    # 2. Against metrics.jsonl.
    missing = sorted(set(want) - set(got))
    extra = sorted(set(got) - set(want))
    if missing:
        errors.append(f"in metrics.jsonl, not in the events: {missing[:5]} ({len(missing)})")
    if extra:
        errors.append(f"in the events, not in metrics.jsonl: {extra[:5]} ({len(extra)})")
    differ = [(k, want[k], got[k]) for k in sorted(set(want) & set(got)) if not same(want[k], got[k])]
    if differ:
        errors.append(f"values differ (tag, step), jsonl as f32, events: {differ[:5]} ({len(differ)})")

    # 3. What TensorBoard's loader builds.
    acc = event_accumulator.EventAccumulator(
        str(run),
        size_guidance={event_accumulator.SCALARS: 0, event_accumulator.TENSORS: 0},
    )
    acc.Reload()
    tags = acc.Tags()
    tb_tags = set(tags["scalars"])
    jsonl_tags = {t for t, _ in want}
    if tb_tags != jsonl_tags:
        errors.append(f"accumulator scalar tags differ: only TB {sorted(tb_tags - jsonl_tags)[:5]}, only jsonl {sorted(jsonl_tags - tb_tags)[:5]}")
    for tag in sorted(tb_tags & jsonl_tags):
        series = acc.Scalars(tag)
        # Some metrics are not in every step (the teacher probe's every N steps).
        tag_steps = sorted(step for t, step in want if t == tag)
        if [s.step for s in series] != tag_steps:
            errors.append(f"accumulator steps of {tag}: {[s.step for s in series]} != {tag_steps}")
            continue
        for s in series:
            if not same(s.value, want[(tag, s.step)]):
                errors.append(f"accumulator {tag} step {s.step}: {s.value} != {want[(tag, s.step)]}")
                break
    config_text = None
    if "config" not in tags["tensors"]:
        errors.append(f"no `config` text (tensor tags: {tags['tensors']})")
    else:
        plugin = acc.SummaryMetadata("config").plugin_data.plugin_name
        if plugin != "text":
            errors.append(f"`config` has plugin {plugin!r}, not 'text'")
        configs = acc.Tensors("config")
        arr = tensor_util.make_ndarray(configs[-1].tensor_proto)
        config_text = unfence(arr.item().decode("utf-8"))
        on_disk = (run / "config.ron").read_text()
        if config_text.rstrip("\n") != on_disk.rstrip("\n"):
            errors.append("the last `config` text is not config.ron")
    status = "OK" if not errors else "FAILED"
    print(
        f"{run}: {len(files)} event file(s), {len(steps)} steps ({steps[0] if steps else '-'}..{steps[-1] if steps else '-'}) "
        f"x {len(jsonl_tags)} scalar tags, each (tag, step) once: {not twice}; "
        f"values = metrics.jsonl as float32: {not differ and not missing and not extra}; "
        f"config text = config.ron ({len(config_text or '')} chars, "
        f"{len(acc.Tensors('config')) if config_text is not None else 0} config record(s)): {status}"
    )
    return errors


def main(argv):
    if len(argv) < 2:
        print(__doc__)
        return 2
    failed = False
    found = 0
    for arg in argv[1:]:
        for run in run_folders(Path(arg)):
            found += 1
            for e in check(run):
                failed = True
                print(f"  error: {e}")
    if not found:
        print("no run folder (with metrics.jsonl) found")
        return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
