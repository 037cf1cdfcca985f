#!/usr/bin/env bash
# Steps per second of `sdpo train` in one process and as N MPI ranks on this machine, with the
# communication time per step and the bytes all-reduced per step (docs/distributed.md).
# Run with nothing else on the machine:
#   cargo build --release -p sdpo-cli --features mpi
#   scripts/bench_ranks.sh OUT_DIR RANKS [sdpo train arguments...]
# e.g. scripts/bench_ranks.sh /tmp/ranks 2 --steps 100
#      scripts/bench_ranks.sh /tmp/ranks-smol 2 examples/configs/smollm2-lora-addition.ron --steps 4
# One process uses every core; each of the N ranks gets cores / N threads (RAYON_NUM_THREADS).
set -euo pipefail
out=$1 ranks=$2
shift 2
bin=${SDPO:-target/release/sdpo}
cores=$(nproc)
mkdir -p "$out"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
rm -rf "$out/one" "$out/ranks"
RAYON_NUM_THREADS=$cores "$bin" train "$@" --out "$out/one" > "$out/one.log" 2>&1
RAYON_NUM_THREADS=$(( cores / ranks > 0 ? cores / ranks : 1 )) \
  mpirun --oversubscribe -np "$ranks" "$bin" train "$@" --out "$out/ranks" > "$out/ranks.log" 2>&1
python3 - "$out" "$ranks" <<'PY'
import json, sys, statistics as st
out, ranks = sys.argv[1], int(sys.argv[2])
def rows(run):
    return [json.loads(l) for l in open(f"{out}/{run}/metrics.jsonl")]
def mean(rs, key):
    v = [r[key] for r in rs if key in r]
    return st.mean(v) if v else float("nan")
print(f"| processes | steps | s/step (mean, from step 2) | steps/s | communication s/step | all-reduced MB/step |")
print("|---|---|---|---|---|---|")
for run, n in (("one", 1), ("ranks", ranks)):
    rs = rows(run)
    tail = rs[1:] if len(rs) > 1 else rs
    s = mean(tail, "time/step")
    comm = mean(tail, "time/communication") if n > 1 else 0.0
    mb = mean(tail, "distributed/reduced_bytes") / 1e6 if n > 1 else 0.0
    print(f"| {n} | {len(rs)} | {s:.4f} | {1/s:.2f} | {comm:.4f} | {mb:.2f} |")
PY
