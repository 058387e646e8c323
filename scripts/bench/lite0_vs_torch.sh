#!/usr/bin/env bash
# `extract` with EfficientNet-Lite0 against PyTorch on the same photos, in the same run:
# both decode, resize to 224×224, preprocess and run Lite0 to its pooled features over every
# photo of DATA/train and DATA/validation, on THREADS threads. Prints both wall times and the
# ratio.
#
#   scripts/bench/lite0_vs_torch.sh DATA [OUT]
#
# DATA: a split made by `prep split` (the standard split: 1,000 + 500 photos per class).
# OUT: where `extract` writes (default: a temporary folder, removed after).
# Environment: BIN_DIR (default target/release, built with `cargo build --release -p extract`),
# LITTLEDATA_EFFICIENTNET_LITE0_WEIGHTS (the weights file), TORCH_PYTHON (a Python with torch
# and timm; default python3), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/../.."

data="${1:?usage: scripts/bench/lite0_vs_torch.sh DATA [OUT]}"
out="${2:-}"
bin="${BIN_DIR:-target/release}/extract"
python="${TORCH_PYTHON:-python3}"
threads="${THREADS:-2}"
[ -x "$bin" ] || { echo "error: $bin not found; run cargo build --release -p extract" >&2; exit 1; }
if [ -z "$out" ]; then
    out="$(mktemp -d)"
    trap 'rm -rf "$out"' EXIT
fi

start=$(date +%s.%N)
RAYON_NUM_THREADS="$threads" "$bin" --pipeline pipelines/efficientnet.toml \
    --set "data.dir=\"$data\"" --set "data.artifacts=\"$out\"" --force
ours=$(echo "$(date +%s.%N) - $start" | bc)
rows=$(find "$data/train" "$data/validation" -type f | wc -l)

torch_line=$(OMP_NUM_THREADS="$threads" "$python" scripts/bench/lite0_torch_extract.py "$data" \
    --threads "$threads" --batch 32 --interpolation nearest | tee /dev/stderr | tail -n 1)
theirs=$(echo "$torch_line" | sed -E 's/.* in ([0-9.]+) s.*/\1/')

printf 'extract (ours): %d images in %.1f s: %.2f images/s\n' "$rows" "$ours" "$(echo "$rows / $ours" | bc -l)"
printf 'pytorch:        %d images in %.1f s: %.2f images/s\n' "$rows" "$theirs" "$(echo "$rows / $theirs" | bc -l)"
printf 'speed-up: %.2fx\n' "$(echo "$theirs / $ours" | bc -l)"
