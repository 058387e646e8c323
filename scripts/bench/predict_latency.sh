#!/usr/bin/env bash
# Our single-image latency: one photo, batch 1, call after call, p50/p90/p99, and (with
# TORCH_PYTHON) PyTorch's on the same photo, threads and head for comparison.
#
#   scripts/bench/predict_latency.sh MODEL_DIR PHOTO
#
# Ours runs the `latency` example of the classify crate,
# `$BIN_DIR/examples/latency --model MODEL_DIR PHOTO --repeat REPEAT --warmup WARMUP`
# (build it with `cargo build --release -p classify --example latency`), which times
# Classifier::decode (decode + resize) + predict_prepared (preprocess + forward + head) on the
# photo's bytes, already in memory, and prints `p50 X ms  p90 Y ms  p99 Z ms  (...)`.
#
# MODEL_DIR: a model artifact folder (artifacts/efficientnet/top, ...) or its model.safetensors.
# PHOTO: a JPEG or PNG.
#
# Environment:
#   BIN_DIR       where examples/latency is (default target/release)
#   THREADS       compute threads: RAYON_NUM_THREADS, and torch's --threads (default 2)
#   REPEAT        timed calls (default 200); WARMUP: calls before them (default 20)
#   TORCH_PYTHON  a Python with torch, timm, safetensors, pillow, numpy: when set, also runs
#                 scripts/bench/lite0_latency_torch.py PHOTO --head HEAD (EfficientNet-Lite0;
#                 meaningful for Lite0 models only)
#   HEAD          top or finetune, for the torch run (default top)
#
# Prints what was measured and a `p50 X ms  p90 Y ms  p99 Z ms` line for ours, then the torch
# script's report and the ratio of the p50s when TORCH_PYTHON is set.
set -euo pipefail
cd "$(dirname "$0")/../.."

usage="usage: scripts/bench/predict_latency.sh MODEL_DIR PHOTO"
model="${1:?$usage}"
photo="${2:?$usage}"
bin_dir="${BIN_DIR:-target/release}"
threads="${THREADS:-2}"
repeat="${REPEAT:-200}"
warmup="${WARMUP:-20}"
[ -e "$model" ] || { echo "error: model $model not found" >&2; exit 1; }
[ -f "$photo" ] || { echo "error: photo $photo not found" >&2; exit 1; }

ours_out="$(mktemp)"
cleanup() {
    rm -f "$ours_out"
}
trap cleanup EXIT

example="$bin_dir/examples/latency"
[ -x "$example" ] || { echo "error: $example not found; cargo build --release -p classify --example latency" >&2; exit 1; }
echo "ours: in process, $example (RAYON_NUM_THREADS=$threads)"
RAYON_NUM_THREADS="$threads" "$example" --model "$model" "$photo" \
    --repeat "$repeat" --warmup "$warmup" | tee "$ours_out"

if [ -n "${TORCH_PYTHON:-}" ]; then
    echo
    torch_out="$(OMP_NUM_THREADS="$threads" "$TORCH_PYTHON" scripts/bench/lite0_latency_torch.py "$photo" \
        --threads "$threads" --repeat "$repeat" --warmup "$warmup" --head "${HEAD:-top}")"
    echo "$torch_out"
    ours_p50="$(sed -nE 's/^p50 ([0-9.]+) ms.*/\1/p' "$ours_out" | tail -n1)"
    torch_p50="$(sed -nE 's/^p50 ([0-9.]+) ms.*/\1/p' <<<"$torch_out" | tail -n1)"
    grep -q efficientnet_lite0 "$ours_out" \
        || echo "note: ours did not report an efficientnet_lite0 model: the two timings are of different networks"
    if [ -n "$ours_p50" ] && [ -n "$torch_p50" ]; then
        awk -v o="$ours_p50" -v t="$torch_p50" \
            'BEGIN { printf "\np50: ours %.2f ms, pytorch %.2f ms: pytorch / ours = %.2fx\n", o, t, t / o }'
    fi
fi
