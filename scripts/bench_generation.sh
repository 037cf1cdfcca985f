#!/usr/bin/env bash
# Generation throughput against Hugging Face `generate`, same shapes, one after the other:
# sdpo-models/benches/generation.rs (Flex, the CLI's CPU default) and
# scripts/bench_generation_torch.py, for each model (SmolLM2-135M-Instruct from its GGUF, a
# random Qwen2.5-0.5B-shaped model), batch (1, 16) and new-token count (32, 256): 40-token
# random prompts, fixed length (no stop id), greedy. Prints one markdown table with tokens/s
# and the ratio to Hugging Face per shape.
#
#   PYTHON=/path/to/venv/bin/python scripts/bench_generation.sh
#
# PYTHON needs torch, transformers, gguf (never in CI). MODELS ("smollm2 qwen05"), BATCHES
# ("1 16"), NEWS ("32 256"), THREADS (2), SDPO_BENCH_RUNS (3: median of that many after one
# untimed run; the 256-token shapes take minutes each), SDPO_BENCH_SAMPLING (greedy unless
# "sample"), ROUNDS (1: how many times each shape runs both sides, one after the other; the
# table gives the median of the per-round ratios and lists them, which a shared machine whose
# speed drifts over minutes needs). Run it on an otherwise idle machine: the figures are
# wall-clock.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
models=${MODELS:-"smollm2 qwen05"}
batches=${BATCHES:-"1 16"}
news=${NEWS:-"32 256"}
threads=${THREADS:-2}
rounds=${ROUNDS:-1}
export SDPO_BENCH_RUNS=${SDPO_BENCH_RUNS:-3}
cargo bench -p sdpo-models --bench generation --features bench-flex --no-run >&2
bench=$(ls -t target/release/deps/generation-* | grep -v '\.d$' | head -1)
results=$(mktemp)
for model in $models; do
  for batch in $batches; do
    for new in $news; do
      for round in $(seq "$rounds"); do
        echo "== $model batch $batch, $new new tokens, round $round" >&2
        RAYON_NUM_THREADS=$threads "$bench" "$model" "$batch" "$new" flex | tee -a "$results" >&2
        THREADS=$threads "$python" scripts/bench_generation_torch.py "$model" "$batch" "$new" 2>/dev/null \
          | grep '^RESULT' | tee -a "$results" >&2
      done
    done
  done
done
python3 - "$results" <<'EOF'
import statistics
import sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "):
        continue
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    rows.setdefault((f["model"], f["batch"], f["new"]), {}).setdefault(f["side"], []).append(f)
print("| model | batch | new tokens | sdpo-rs tok/s | prefill s | HF tok/s | prefill s | sdpo-rs / HF | each round | peak MiB sdpo-rs / HF |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
median = lambda runs, k: f"{statistics.median(float(r[k]) for r in runs):.4g}" if runs else "—"
for (model, batch, new), sides in rows.items():
    ours, theirs = sides.get("sdpo", []), sides.get("torch", [])
    ratios = [float(o["tokens_per_s"]) / float(t["tokens_per_s"]) for o, t in zip(ours, theirs)]
    ratio = f"{statistics.median(ratios):.2f}x" if ratios else ""
    each = ", ".join(f"{r:.2f}" for r in ratios)
    mem = f"{median(ours, 'peak_mib')} / {median(theirs, 'peak_mib')}"
    print(f"| {model} | {batch} | {new} | {median(ours, 'tokens_per_s')} | {median(ours, 'prefill_s')} | "
          f"{median(theirs, 'tokens_per_s')} | {median(theirs, 'prefill_s')} | {ratio} | {each} | {mem} |")
EOF
