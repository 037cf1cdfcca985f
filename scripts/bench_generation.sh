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
# "sample"). Run it on an otherwise idle machine: the figures are wall-clock.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
models=${MODELS:-"smollm2 qwen05"}
batches=${BATCHES:-"1 16"}
news=${NEWS:-"32 256"}
threads=${THREADS:-2}
export SDPO_BENCH_RUNS=${SDPO_BENCH_RUNS:-3}
cargo bench -p sdpo-models --bench generation --features bench-flex --no-run >&2
bench=$(ls -t target/release/deps/generation-* | grep -v '\.d$' | head -1)
results=$(mktemp)
for model in $models; do
  for batch in $batches; do
    for new in $news; do
      echo "== $model batch $batch, $new new tokens" >&2
      RAYON_NUM_THREADS=$threads "$bench" "$model" "$batch" "$new" flex | tee -a "$results" >&2
      THREADS=$threads "$python" scripts/bench_generation_torch.py "$model" "$batch" "$new" 2>/dev/null \
        | grep '^RESULT' | tee -a "$results" >&2
    done
  done
done
python3 - "$results" <<'EOF'
import sys
rows = {}
for line in open(sys.argv[1]):
    if not line.startswith("RESULT "):
        continue
    f = dict(kv.split("=", 1) for kv in line.split()[1:])
    rows.setdefault((f["model"], f["batch"], f["new"]), {})[f["side"]] = f
print("| model | batch | new tokens | sdpo-rs tok/s | prefill s | HF tok/s | prefill s | sdpo-rs / HF | peak MiB sdpo-rs / HF |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for (model, batch, new), sides in rows.items():
    ours, theirs = sides.get("sdpo"), sides.get("torch")
    cell = lambda s, k: s[k] if s else "—"
    ratio = f"{float(ours['tokens_per_s']) / float(theirs['tokens_per_s']):.2f}x" if ours and theirs else ""
    mem = f"{cell(ours, 'peak_mib')} / {cell(theirs, 'peak_mib')}"
    print(f"| {model} | {batch} | {new} | {cell(ours, 'tokens_per_s')} | {cell(ours, 'prefill_s')} | "
          f"{cell(theirs, 'tokens_per_s')} | {cell(theirs, 'prefill_s')} | {ratio} | {mem} |")
EOF
