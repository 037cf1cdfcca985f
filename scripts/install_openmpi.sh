#!/usr/bin/env bash
# Installs Open MPI (mpirun and its headers) and libclang (the `mpi` crate generates its
# bindings with bindgen): what `--features mpi` needs to build and `mpirun -np N sdpo train`
# to run. Idempotent; needs root (or sudo) and apt. Debian/Ubuntu package names.
set -euo pipefail
"$(dirname "$0")/apt_install.sh" openmpi-bin libopenmpi-dev libclang-dev
mpirun --version | head -1
