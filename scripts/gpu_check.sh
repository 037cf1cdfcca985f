#!/usr/bin/env bash
# The CUDA check, in one command, for a machine with an NVIDIA GPU, its driver, CUDA 13 and a
# Python with PyTorch and transformers, but no Rust toolchain and no network: prebuilt binaries
# of the backend test suite and of the GPU benchmark travel with the repository.
#
#   scripts/gpu_check.sh --build     # HERE (Rust machine, no GPU needed): build both binaries
#                                    # for CUDA into gpu-check/bin/, stripped, size-checked
#   scripts/gpu_check.sh --dry-run   # print every command it would run; fail naming any
#                                    # missing file
#   scripts/gpu_check.sh             # THERE, from the repository root: run everything
#
# What a run does, in order, each step bounded so that the whole stays under ~7 minutes:
#   1. nvidia-smi;
#   2. the backend-generic suite on Burn's Cuda backend: `gpu-check/bin/backends cuda::
#      --test-threads 1` (tests/backends, built by `cargo test -p sdpo --features cuda --test
#      backends`); it reads sdpo-models/tests/fixtures/models and tests/golden by the absolute
#      path of the checkout it was built in (recorded in gpu-check/build-root; a symbolic link
#      from that path to this checkout is made when the path is absent here);
#   3. for each model shape: the Rust bench (gpu-check/bin/gpu, sdpo-train/benches/gpu.rs) on
#      cuda, phases train, generate and step, and scripts/gpu_bench_torch.py on cuda, phases
#      train and generate, each phase in a process of its own while nvidia-smi's memory.used is
#      polled (the process's peak, CUDA context and kernels included, minus the idle baseline);
#      the generate phase runs the generation engine (in-place KV cache, the CubeCL attention
#      kernel through Burn's fusion, one prefill per distinct prompt), the step phase its rollout;
#   4. one markdown table: rows model x {sdpo-rs cuda, torch}; forward+backward and generation
#      tokens/s with ratios to torch, the SDPO step and its phases (Rust only), peak memory.
#
# Results and logs go to $OUT when it is set (the device tool returns that folder), else to
# gpu-check/out: results.txt (RESULT lines), table.md, suite.log, bench.log.
#
# Environment (run):
#   SHAPES           model shapes, in order (default "smollm2-135m qwen2.5-1.5b"; also "tiny")
#   RUST_PHASES      default "train generate step";  TORCH_PHASES  default "train generate"
#   SKIP_SUITE=1     skip the test suite;  SKIP_TORCH=1  skip PyTorch
#   QUICK=1          small sizes everywhere (checks that everything runs)
#   DEADLINE_S       no step starts after this many seconds, and none runs past it (default 400)
#   SUITE_TIMEOUT_S  the suite's own limit (default 200);  PHASE_TIMEOUT_S  one phase's (120)
#   PYTHON           a Python with torch and transformers (default python3)
#   TORCH_DEVICE     the torch script's --device (default cuda; cpu only to try the script out)
#   SDPO_BENCH_*     sizes and repetitions, for both benches (see sdpo-train/benches/gpu.rs)
# Environment (--build):
#   CUDARC_CUDA_VERSION  CUDA API the binaries are built against (default 13000, i.e. 13.0, the
#                        driver's CUDA; libraries are loaded at run time, no CUDA needed here)
#   PROFILE              cargo profile (default release)
#   LIMIT_MIB            most MiB the two binaries may take together (default 60); over it,
#                        they are gzip-compressed (a run unpacks them to a temporary folder)
#                        and the build fails if even that is over
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD

mode=run
for arg in "$@"; do
  case $arg in
    --dry-run) mode=dry ;;
    --build) mode=build ;;
    -h | --help)
      sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "gpu_check: unknown argument '$arg' (--build, --dry-run, --help)" >&2
      exit 2
      ;;
  esac
done

BIN=gpu-check/bin
BINARIES="backends gpu"
FIXTURES="sdpo-models/tests/fixtures/models tests/golden"
TORCH_SCRIPT=scripts/gpu_bench_torch.py

say() { echo "== $*" >&2; }

# --- build (on the Rust machine) -----------------------------------------------------------
if [[ $mode == build ]]; then
  set -e
  export CUDARC_CUDA_VERSION=${CUDARC_CUDA_VERSION:-13000}
  profile=${PROFILE:-release}
  limit_mib=${LIMIT_MIB:-60}
  features=sdpo/cuda,sdpo-train/bench-cuda
  cmd=(cargo test --profile "$profile" -p sdpo -p sdpo-train --features "$features"
    --test backends --bench gpu --no-run --message-format=json-render-diagnostics)
  say "building (CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION): ${cmd[*]}"
  messages=$(mktemp)
  trap 'rm -f "$messages"' EXIT
  "${cmd[@]}" >"$messages"
  mkdir -p "$BIN"
  rm -f "$BIN"/backends "$BIN"/gpu "$BIN"/backends.gz "$BIN"/gpu.gz
  for name in $BINARIES; do
    exe=$(python3 - "$messages" "$name" <<'EOF'
import json, sys

path, name = sys.argv[1:3]
found = []
for line in open(path):
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == name:
        found.append(m["executable"])
print(found[-1] if found else "")
EOF
    )
    if [[ -z $exe ]]; then
      echo "gpu_check: cargo reported no executable for '$name'" >&2
      exit 1
    fi
    cp "$exe" "$BIN/$name"
    strip "$BIN/$name"
    say "$BIN/$name <- $exe ($(du -m "$BIN/$name" | cut -f1) MiB stripped)"
  done
  echo "$root" >gpu-check/build-root
  {
    echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) from commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "profile $profile, features $features, CUDARC_CUDA_VERSION=$CUDARC_CUDA_VERSION, $(rustc --version)"
  } >gpu-check/build-info
  total_bytes() { local t=0 f; for f in "$@"; do t=$((t + $(stat -c %s "$f"))); done; echo "$t"; }
  limit=$((limit_mib * 1024 * 1024))
  total=$(total_bytes "$BIN"/backends "$BIN"/gpu)
  if ((total > limit)); then
    say "$((total / 1048576)) MiB together, over ${limit_mib} MiB: compressing"
    gzip -9 "$BIN"/backends "$BIN"/gpu
    total=$(total_bytes "$BIN"/backends.gz "$BIN"/gpu.gz)
    if ((total > limit)); then
      echo "gpu_check: the binaries take $((total / 1048576)) MiB together even compressed, over ${limit_mib} MiB" >&2
      exit 1
    fi
  fi
  tree_bytes=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1)
  say "gpu-check/ ready: binaries $((total / 1048576)) MiB; the tracked files that travel with them $((tree_bytes / 1048576)) MiB (64 MiB in all at most)"
  say "on the GPU machine: scripts/gpu_check.sh (the device tool: carry [\"gpu-check\"], timeout_s 480)"
  exit 0
fi

# --- run and dry run -----------------------------------------------------------------------
SHAPES=${SHAPES:-"smollm2-135m qwen2.5-1.5b"}
RUST_PHASES=${RUST_PHASES:-"train generate step"}
TORCH_PHASES=${TORCH_PHASES:-"train generate"}
DEADLINE_S=${DEADLINE_S:-400}
SUITE_TIMEOUT_S=${SUITE_TIMEOUT_S:-200}
PHASE_TIMEOUT_S=${PHASE_TIMEOUT_S:-120}
PYTHON=${PYTHON:-python3}
TORCH_DEVICE=${TORCH_DEVICE:-cuda}
if [[ ${QUICK:-0} == 1 ]]; then
  export SDPO_BENCH_BATCH=${SDPO_BENCH_BATCH:-2} SDPO_BENCH_LEN=${SDPO_BENCH_LEN:-16} \
    SDPO_BENCH_GEN_BATCH=${SDPO_BENCH_GEN_BATCH:-2} SDPO_BENCH_PROMPT_LEN=${SDPO_BENCH_PROMPT_LEN:-8} \
    SDPO_BENCH_NEW_TOKENS=${SDPO_BENCH_NEW_TOKENS:-8} SDPO_BENCH_RUNS=${SDPO_BENCH_RUNS:-2} \
    SDPO_BENCH_STEP_PROMPTS=${SDPO_BENCH_STEP_PROMPTS:-2} SDPO_BENCH_STEP_GENERATIONS=${SDPO_BENCH_STEP_GENERATIONS:-2} \
    SDPO_BENCH_STEP_NEW_TOKENS=${SDPO_BENCH_STEP_NEW_TOKENS:-8}
fi
for shape in $SHAPES; do
  case $shape in
    tiny | smollm2-135m | qwen2.5-1.5b) ;;
    *) echo "gpu_check: unknown shape '$shape' in SHAPES (tiny, smollm2-135m, qwen2.5-1.5b)" >&2; exit 2 ;;
  esac
done

# Each binary, plain or gzip-compressed ($BIN/NAME or $BIN/NAME.gz).
declare -A path_of
missing=()
for name in $BINARIES; do
  if [[ -f $BIN/$name ]]; then
    path_of[$name]=$BIN/$name
  elif [[ -f $BIN/$name.gz ]]; then
    path_of[$name]=$BIN/$name.gz
  else
    path_of[$name]=$BIN/$name
    missing+=("$BIN/$name (build it here with: scripts/gpu_check.sh --build; then carry gpu-check/)")
  fi
done
[[ -f $TORCH_SCRIPT ]] || missing+=("$TORCH_SCRIPT")
for dir in $FIXTURES; do
  if [[ ! -d $dir ]] || [[ -z $(ls -A "$dir" 2>/dev/null) ]]; then
    missing+=("$dir/ (the fixtures the test suite reads; they are in the git tree)")
  fi
done

# The checkout the suite was built in: its fixture paths are compiled in.
build_root=""
[[ -f gpu-check/build-root ]] && build_root=$(<gpu-check/build-root)
link_plan=""
if [[ -n $build_root && $build_root != "$root" ]]; then
  if [[ ! -e $build_root ]]; then
    link_plan="ln -s $root $build_root"
  elif [[ ! -d $build_root/tests/golden ]]; then
    missing+=("$build_root/tests/golden (the suite was built in $build_root, which exists here but is not a checkout; run from there or remove it)")
  fi
fi

deadline_note="every step is cut at ${DEADLINE_S}s after the start (DEADLINE_S)"
if [[ $mode == dry ]]; then
  echo "# gpu_check --dry-run: what a run would do (from $root)"
  [[ -n $build_root ]] || echo "# note: gpu-check/build-root is absent: the suite will look for its fixtures where it was built"
  [[ -n $link_plan ]] && echo "$link_plan    # the suite's compiled-in fixture paths point to $build_root"
  for name in $BINARIES; do
    [[ ${path_of[$name]} == *.gz ]] && echo "gunzip -c ${path_of[$name]} > \$tmp/$name && chmod +x \$tmp/$name"
  done
  echo "nvidia-smi"
  [[ ${SKIP_SUITE:-0} == 1 ]] || echo "timeout $SUITE_TIMEOUT_S ${path_of[backends]%.gz} cuda:: --test-threads 1"
  for shape in $SHAPES; do
    for phase in $RUST_PHASES; do
      echo "timeout $PHASE_TIMEOUT_S ${path_of[gpu]%.gz} cuda $shape $phase    # nvidia-smi polled"
    done
    if [[ ${SKIP_TORCH:-0} != 1 ]]; then
      for phase in $TORCH_PHASES; do
        echo "timeout $PHASE_TIMEOUT_S $PYTHON $TORCH_SCRIPT $shape $phase --device $TORCH_DEVICE    # nvidia-smi polled"
      done
    fi
  done
  echo "# then: the markdown table from the RESULT lines; $deadline_note"
  env | grep -E '^(SDPO_BENCH_|SDPO_TORCH_)' | sed 's/^/# env: /' || true
  for tool in nvidia-smi "$PYTHON" timeout; do
    command -v "$tool" >/dev/null || echo "# note: '$tool' is not on this machine (needed on the GPU machine)"
  done
  if ((${#missing[@]})); then
    echo "gpu_check: missing:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    exit 1
  fi
  echo "# every file a run needs is present"
  exit 0
fi

if ((${#missing[@]})); then
  echo "gpu_check: missing:" >&2
  printf '  %s\n' "${missing[@]}" >&2
  exit 1
fi

start=$(date +%s)
out=${OUT:-gpu-check/out}
mkdir -p "$out"
results=$out/results.txt
: >"$results"
tmp=$(mktemp -d)
poller=""
cleanup() {
  [[ -n $poller ]] && kill "$poller" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

if [[ -n $link_plan ]]; then
  say "$link_plan (the suite's compiled-in fixture paths)"
  mkdir -p "$(dirname "$build_root")" && ln -s "$root" "$build_root" ||
    echo "gpu_check: could not link $build_root to $root: the suite's fixture tests will fail" >&2
fi
for name in $BINARIES; do
  if [[ ${path_of[$name]} == *.gz ]]; then
    gunzip -c "${path_of[$name]}" >"$tmp/$name"
    path_of[$name]=$tmp/$name
  fi
  chmod +x "${path_of[$name]}"
done

# libnvrtc (CubeCL compiles its kernels with it at run time): the loader's paths, else the CUDA
# toolkit's folders, else the NVIDIA wheels beside PyTorch.
if ! ldconfig -p 2>/dev/null | grep -q 'libnvrtc\.so'; then
  dirs=$(ls -d /usr/local/cuda/lib64 /usr/local/cuda/targets/*/lib /usr/local/cuda-*/lib64 2>/dev/null)
  dirs="$dirs $("$PYTHON" -c 'import glob, os, nvidia
print(" ".join(sorted({os.path.dirname(p) for d in nvidia.__path__ for p in glob.glob(os.path.join(d, "**", "libnvrtc.so*"), recursive=True)})))' 2>/dev/null)"
  for dir in $dirs; do
    if ls "$dir"/libnvrtc.so* >/dev/null 2>&1; then
      export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
      say "libnvrtc from $dir"
      break
    fi
  done
fi

elapsed() { echo $(($(date +%s) - start)); }

# run_step LIMIT LOG STDOUT CMD...: runs CMD with at most LIMIT seconds and what is left before
# the deadline; its stdout is appended to STDOUT, its stderr to LOG, both shown here too.
# Returns CMD's status, 124 or 137 on a timeout, 125 when no time was left to start it.
run_step() {
  local limit=$1 log=$2 stdout=$3
  shift 3
  local left=$((DEADLINE_S - $(elapsed)))
  ((left < limit)) && limit=$left
  if ((limit < 5)); then
    echo "gpu_check: skipped (deadline ${DEADLINE_S}s reached): $*" | tee -a "$log" >&2
    return 125
  fi
  echo "\$ $*" >>"$log"
  timeout --kill-after=10 "$limit" "$@" 2> >(tee -a "$log" >&2) | tee -a "$stdout"
  return "${PIPESTATUS[0]}"
}

gpu_used() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1; }

# bench BACKEND SHAPE PHASE CMD...: one bench phase with nvidia-smi polled around it.
bench() {
  local backend=$1 shape=$2 phase=$3
  shift 3
  local base smi status
  base=$(gpu_used)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 >"$tmp/smi" 2>/dev/null &
  poller=$!
  run_step "$PHASE_TIMEOUT_S" "$out/bench.log" "$results" "$@"
  status=$?
  kill "$poller" 2>/dev/null
  wait "$poller" 2>/dev/null
  poller=""
  smi=$(sort -n "$tmp/smi" 2>/dev/null | tail -1)
  if [[ -n $base && -n $smi ]]; then
    echo "SMI backend=$backend model=$shape phase=$phase smi_mib=$((smi - base))" >>"$results"
  fi
  if ((status != 0)); then
    local why="exit $status"
    ((status == 124 || status == 137)) && why=timeout
    ((status == 125)) && why=skipped
    echo "FAIL backend=$backend model=$shape phase=$phase why=${why// /_}" >>"$results"
    failed+=("$backend $shape $phase ($why)")
  fi
}

failed=()
say "nvidia-smi"
nvidia-smi || failed+=("nvidia-smi")
gpu_name=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -1)

suite_summary="not run (SKIP_SUITE=1)"
if [[ ${SKIP_SUITE:-0} != 1 ]]; then
  say "the backend suite on cuda (${path_of[backends]} cuda:: --test-threads 1)"
  run_step "$SUITE_TIMEOUT_S" "$out/suite.log" "$out/suite.log" "${path_of[backends]}" cuda:: --test-threads 1
  status=$?
  suite_summary=$(grep -E '^test result:' "$out/suite.log" | tail -1)
  if ((status != 0)); then
    ((status == 124 || status == 137)) && suite_summary="timed out after ${SUITE_TIMEOUT_S}s ${suite_summary}"
    [[ -n $suite_summary ]] || suite_summary="failed (exit $status)"
    failed+=("suite: $suite_summary")
    grep -E '^test .* FAILED$|^failures:$|^    [a-z_:]+$' "$out/suite.log" | head -40 >&2 || true
  fi
  say "suite: $suite_summary"
fi

for shape in $SHAPES; do
  for phase in $RUST_PHASES; do
    say "sdpo-rs cuda $shape $phase"
    bench cuda "$shape" "$phase" "${path_of[gpu]}" cuda "$shape" "$phase"
  done
  if [[ ${SKIP_TORCH:-0} != 1 ]]; then
    for phase in $TORCH_PHASES; do
      say "torch $TORCH_DEVICE $shape $phase"
      bench torch "$shape" "$phase" "$PYTHON" "$TORCH_SCRIPT" "$shape" "$phase" --device "$TORCH_DEVICE"
    done
  fi
done

build_info=$(cat gpu-check/build-info 2>/dev/null || echo "build info absent")
"$PYTHON" - "$results" "$gpu_name" "$suite_summary" "$build_info" "$(elapsed)" <<'EOF' | tee "$out/table.md"
import sys

path, gpu, suite, build, seconds = sys.argv[1:6]
rows = {}
order = []
for line in open(path):
    kind, *pairs = line.split()
    if kind not in ("RESULT", "SMI", "FAIL"):
        continue
    fields = dict(kv.split("=", 1) for kv in pairs if "=" in kv)
    key = (fields.get("model"), fields.get("backend"), fields.get("phase"))
    if key[0] not in order:
        order.append(key[0])
    rows.setdefault(key, {}).update(fields)


def num(model, backend, phase, name):
    try:
        return float(rows[(model, backend, phase)][name])
    except (KeyError, ValueError):
        return None


def cell(model, backend, phase, name, fmt):
    v = num(model, backend, phase, name)
    if v is not None:
        return format(v, fmt)
    why = rows.get((model, backend, phase), {}).get("why")
    return why.replace("_", " ") if why else "—"


def ratio(model, backend, phase, name):
    v, t = num(model, backend, phase, name), num(model, "torch", phase, name)
    return "—" if v is None or not t or backend == "torch" else f"{v / t:.2f}×"


def mem(model, backend, phase):
    pool, smi = cell(model, backend, phase, "pool_mib", ".0f"), cell(model, backend, phase, "smi_mib", ".0f")
    return f"{pool} / {smi}"


def shape(model, phase):
    for backend in ("cuda", "torch"):
        s = rows.get((model, backend, phase), {}).get("shape")
        if s:
            return s
    return "?"


print(f"GPU: {gpu or '?'}; {build}")
print(f"backend suite (cuda::): {suite or '?'}; wall time of the whole check {seconds}s\n")
print("| model | impl | fwd+bwd tok/s | ×torch | gen tok/s | ×torch | SDPO step s | rollout | reward | teacher | student | update | "
      "MiB fwd+bwd pool / smi | ×torch (pool) | MiB gen pool / smi | ×torch (pool) | MiB step pool / smi |")
print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
for model in order:
    for backend, label in (("cuda", "sdpo-rs cuda"), ("torch", "torch")):
        if not any(k[0] == model and k[1] == backend for k in rows):
            continue
        step = [cell(model, backend, "step", k, ".3f") for k in
                ("median_s", "rollout_s", "reward_s", "teacher_s", "student_s", "update_s")]
        print(f"| {model} | {label} "
              f"| {cell(model, backend, 'train', 'tokens_per_s', '.0f')} | {ratio(model, backend, 'train', 'tokens_per_s')} "
              f"| {cell(model, backend, 'generate', 'tokens_per_s', '.0f')} | {ratio(model, backend, 'generate', 'tokens_per_s')} "
              f"| {' | '.join(step)} "
              f"| {mem(model, backend, 'train')} | {ratio(model, backend, 'train', 'pool_mib')} "
              f"| {mem(model, backend, 'generate')} | {ratio(model, backend, 'generate', 'pool_mib')} "
              f"| {mem(model, backend, 'step')} |")
print()
for model in order:
    params = {b: rows.get((model, b, "train"), {}).get("params") for b in ("cuda", "torch")}
    print(f"- {model}: fwd+bwd {shape(model, 'train')} tokens; generation {shape(model, 'generate')} "
          f"(batch x prompt + new, greedy, KV cache); SDPO step {shape(model, 'step')} "
          f"(prompts x samples x prompt + new); parameters sdpo-rs {params['cuda'] or '?'}, torch {params['torch'] or '?'}")
print("- f32 everywhere. Ratios are sdpo-rs / torch: above 1 is faster for tok/s, below 1 is leaner for memory.")
print("- pool: the allocator's high-water mark (CubeCL's pools; torch.cuda.max_memory_reserved); "
      "smi: nvidia-smi's memory.used peak minus idle, CUDA context included (polled every 100 ms).")
print("- SDPO step: wall time (device synced) and the trainer's time/* metrics (host clocks); no torch counterpart.")
EOF

if ((${#failed[@]})); then
  echo "gpu_check: failed:" >&2
  printf '  %s\n' "${failed[@]}" >&2
  exit 1
fi
say "done in $(elapsed)s; results in $out"
