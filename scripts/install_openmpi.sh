#!/usr/bin/env bash
# Installs Open MPI (mpirun and its headers) and libclang (the `mpi` crate generates its
# bindings with bindgen): what `--features mpi` needs to build and `mpirun -np N sdpo train`
# to run. Idempotent; needs root (or sudo) and apt. Debian/Ubuntu package names.
set -euo pipefail
packages=(openmpi-bin libopenmpi-dev libclang-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
mpirun --version | head -1
