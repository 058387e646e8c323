#!/usr/bin/env bash
# Checks that the workspace compiles and is clippy-clean with CUDA turned on, on any machine
# (no GPU or system CUDA needed): installs the pinned CUDA toolkit from PyPI when missing
# (scripts/cuda-toolkit.sh), turns on the `cuda` feature of every workspace member that
# declares one (scripts/cuda-features.sh), then runs
#   cargo clippy --workspace --all-targets --locked --features "..." -- -D warnings
# (clippy type-checks everything `cargo check` does, then lints) in its own target folder, so
# the CPU build's cache in target/ stays valid. Prints the wall times. From a cold target folder
# most of the time is candle's CUDA kernels (nvcc); they are compiled on every core
# (CUDAFORGE_THREADS, default: all of them; candle's build would use half), and a target folder
# kept between runs (CUDA_CHECK_TARGET_DIR) builds them once per candle version.
#
# Usage: scripts/cuda-check.sh [EXTRA CARGO FLAGS...]   (for example --offline)
#
# Environment (optional):
#   CUDA_CHECK_TARGET_DIR    the target folder (default: target/cuda)
#   CUDAFORGE_THREADS        parallel nvcc jobs for candle's kernels (default: every core)
#   CUDA_COMPUTE_CAP         compute capability the kernels are built for (default: 80)
#   LITTLEDATA_CUDA_TOOLKIT  where the toolkit is installed (see scripts/cuda-toolkit.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

die() {
    echo "cuda-check: error: $*" >&2
    exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

command -v cargo >/dev/null || die "cargo not found: a Rust toolchain is needed"
T0=$(now)
ENV=$(scripts/cuda-toolkit.sh) || die "could not install the CUDA toolkit (scripts/cuda-toolkit.sh)"
eval "$ENV"
command -v nvcc >/dev/null || die "nvcc is not on PATH after scripts/cuda-toolkit.sh"
FEATURES=$(scripts/cuda-features.sh)
export CARGO_TARGET_DIR=${CUDA_CHECK_TARGET_DIR:-$ROOT/target/cuda}
export CUDAFORGE_THREADS=${CUDAFORGE_THREADS:-$(nproc 2>/dev/null || echo 2)}
echo "== nvcc: $(nvcc --version | tail -n1); CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
echo "== features: $FEATURES; target folder: $CARGO_TARGET_DIR; toolkit ready in $(elapsed "$T0") s"

T=$(now)
cargo clippy --workspace --all-targets --locked "$@" --features "$FEATURES" -- -D warnings
echo "== CUDA build checks passed in $(elapsed "$T0") s (cargo clippy $(elapsed "$T") s)"
