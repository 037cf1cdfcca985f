#!/usr/bin/env bash
# Checks that sdpo and Python's `huggingface_hub` share one Hugging Face cache: the tiny GGUF
# fixture, exported to a model folder, is served by the fixture Hub (sdpo-models'
# `FixtureHub`, from an ignored test); Python downloads it and `sdpo` reads Python's cache
# offline; `sdpo` downloads it and Python reads sdpo's cache offline.
#
#   PYTHON=/tmp/venv/bin/python scripts/check_hub_cache_python.sh   # needs huggingface_hub
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cargo build -q -p sdpo-cli
sdpo=${CARGO_TARGET_DIR:-target}/debug/sdpo
"$sdpo" export sdpo-models/src/gguf/testdata/tiny_llama.f32.gguf "$work/repo" >/dev/null

HUB_FIXTURE_DIR="$work/repo" HUB_FIXTURE_REPO=tiny/llama HUB_FIXTURE_SECS=300 \
  HUB_FIXTURE_ENDPOINT_FILE="$work/endpoint" \
  cargo test -q -p sdpo-models --lib serve_a_folder_for_the_python_cache_check -- --ignored >/dev/null 2>&1 &
server=$!
for _ in $(seq 600); do [ -s "$work/endpoint" ] && break; sleep 1; done
export HF_ENDPOINT; HF_ENDPOINT=$(cat "$work/endpoint")
echo "fixture Hub at $HF_ENDPOINT"

echo "== Python downloads, sdpo reads Python's cache offline"
HF_HOME="$work/py" "$PYTHON" -c 'from huggingface_hub import snapshot_download; print(snapshot_download("tiny/llama"))'
HF_HOME="$work/py" HF_HUB_OFFLINE=1 "$sdpo" inspect tiny/llama | head -3

echo "== sdpo downloads, Python reads sdpo's cache offline"
HF_HOME="$work/rs" "$sdpo" inspect tiny/llama | head -1
HF_HOME="$work/rs" HF_HUB_OFFLINE=1 "$PYTHON" - <<'PY'
from huggingface_hub import snapshot_download, hf_hub_download, scan_cache_dir
path = snapshot_download("tiny/llama")
print("snapshot:", path)
print("config.json:", hf_hub_download("tiny/llama", "config.json"))
info = scan_cache_dir()
for repo in info.repos:
    print("scan_cache_dir:", repo.repo_id, repo.repo_type, "refs", sorted(r for rev in repo.revisions for r in rev.refs), "files", sorted(f.file_name for rev in repo.revisions for f in rev.files))
assert not info.warnings, info.warnings
PY
echo "OK: one cache for both"
