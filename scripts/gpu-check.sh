#!/usr/bin/env bash
# GPU check: builds the stages with CUDA, splits the photos, extracts the VGG16 bottleneck
# features, trains the top model briefly, then runs one fine-tuning epoch with the view cache
# and one with live augmentation, all on `--device cuda`, and prints what each step took.
# After the build it takes a few minutes on one recent NVIDIA GPU.
#
# Usage: scripts/gpu-check.sh [SOURCE_DIR]
#   SOURCE_DIR  labelled photos, Kaggle-style (`cat.12.jpg`) or one folder per class
#               (default: $LITTLEDATA_SOURCE, else ../shared/data/dogs-vs-cats/train)
#
# Environment (all optional):
#   LITTLEDATA_VGG16_WEIGHTS  VGG16 weights (default: ../shared/models/vgg16_imagenet_features.safetensors)
#   GPU_CHECK_DIR             work folder for data/ and artifacts/ (default: a new temporary folder)
#   GPU_CHECK_BUILD=0         use the binaries already in target/release instead of building
#   GPU_CHECK_VIEWS           cached views per training image (default: 10, the pipeline's)
#   GPU_CHECK_LIVE=0          skip the live-augmentation epoch
#   GPU_CHECK_TOP_EPOCHS      epochs of the top model (default: 10)
#   GPU_CHECK_BATCH           images per forward batch when extracting and caching (default: 64)
#   GPU_CHECK_TRAIN, GPU_CHECK_VALIDATION
#                             images per class in the split (default: 1000 and 500, the post's)
#   GPU_CHECK_DEVICE          the stages' --device (default: cuda; `cpu` dry-runs this script)
#   CUDA_COMPUTE_CAP          compute capability for candle's CUDA kernels (default: from nvidia-smi)
#   CARGO_FLAGS               extra cargo build flags (for example `--offline`)
set -Eeuo pipefail
trap 'echo "gpu-check: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=$(cd .. && pwd)/shared

die() {
    echo "gpu-check: error: $*" >&2
    exit 1
}

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

SOURCE=${1:-${LITTLEDATA_SOURCE:-$SHARED/data/dogs-vs-cats/train}}
WEIGHTS=${LITTLEDATA_VGG16_WEIGHTS:-$SHARED/models/vgg16_imagenet_features.safetensors}
VIEWS=${GPU_CHECK_VIEWS:-10}
TOP_EPOCHS=${GPU_CHECK_TOP_EPOCHS:-10}
BATCH=${GPU_CHECK_BATCH:-64}
BUILD=${GPU_CHECK_BUILD:-1}
TRAIN=${GPU_CHECK_TRAIN:-1000}
VALIDATION=${GPU_CHECK_VALIDATION:-500}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
LIVE=${GPU_CHECK_LIVE:-1}

# --- What is there -------------------------------------------------------------------------
[ -d "$SOURCE" ] || die "no photos at $SOURCE (give the folder as the first argument)"
[ -f "$WEIGHTS" ] || die "no VGG16 weights at $WEIGHTS (set LITTLEDATA_VGG16_WEIGHTS)"
for n in "$VIEWS" "$TOP_EPOCHS" "$BATCH" "$TRAIN" "$VALIDATION"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "the GPU_CHECK_* counts must be positive whole numbers, got '$n'"
done
GPU=0
case "$DEVICE" in cuda | cuda:*) GPU=1 ;; esac
FEATURES=()
if [ "$GPU" = 1 ]; then
    command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver on this machine"
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader \
        >/dev/null 2>&1 || die "nvidia-smi cannot query a GPU"
    echo "== GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader | head -n1)"
    if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
        CUDA_COMPUTE_CAP=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n1 | tr -d '. ')
        export CUDA_COMPUTE_CAP
    fi
    echo "== CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP"
    FEATURES=(--features "finetune/cuda extract/cuda")
else
    echo "== dry run on --device $DEVICE (no GPU involved)"
fi
echo "== CPU: $(nproc) cores; photos: $SOURCE; weights: $WEIGHTS"

BIN=${CARGO_TARGET_DIR:-$ROOT/target}/release
if [ "$BUILD" = 1 ]; then
    command -v cargo >/dev/null || die "cargo not found: a Rust toolchain is needed to build"
    if [ "$GPU" = 1 ]; then
        command -v nvcc >/dev/null || die "nvcc not found: the CUDA build needs the CUDA toolkit on PATH"
        echo "== nvcc: $(nvcc --version | tail -n1)"
    fi
    echo "== cargo: $(cargo --version)"
    t=$(now)
    # One build for every binary: they share one CUDA-enabled candle (features unify, so
    # prep and train-top get it too).
    # shellcheck disable=SC2086
    cargo build --release --locked ${CARGO_FLAGS:-} \
        -p prep -p extract -p train-top -p finetune "${FEATURES[@]}"
    echo "== build: $(elapsed "$t") s"
fi
for b in prep extract train-top finetune; do
    [ -x "$BIN/$b" ] || die "$BIN/$b is missing (build with GPU_CHECK_BUILD=1)"
done

WORK=${GPU_CHECK_DIR:-$(mktemp -d -t littledata-gpu-check.XXXXXX)}
mkdir -p "$WORK"
LOG=$WORK/gpu-check.log
: >"$LOG"
echo "== work folder: $WORK (log: $LOG)"

# GPU memory in use, sampled every half second while the stages run.
MEM_LOG=$WORK/gpu-memory.csv
: >"$MEM_LOG"
SAMPLER=
if [ "$GPU" = 1 ]; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 >"$MEM_LOG" 2>/dev/null &
    SAMPLER=$!
fi
cleanup() { if [ -n "$SAMPLER" ]; then kill "$SAMPLER" 2>/dev/null || true; fi; }
trap cleanup EXIT

COMMON=(--pipeline "$ROOT/pipelines/blog.toml"
    --set "data.dir=$WORK/data" --set "data.artifacts=$WORK/artifacts"
    --set "bottleneck.batch_size=$BATCH"
    --set "split.train=$TRAIN" --set "split.validation=$VALIDATION")
SUMMARY=()

# Runs one stage, logging its output and recording its wall-clock time.
step() {
    local name=$1
    shift
    echo
    echo "== $name: $*"
    local t
    t=$(now)
    "$@" 2>&1 | tee -a "$LOG"
    local s
    s=$(elapsed "$t")
    echo "== $name: $s s"
    SUMMARY+=("$(printf '%-28s %8s s' "$name" "$s")")
}

step "split (CPU)" "$BIN/prep" split "${COMMON[@]}" --source "$SOURCE"
step "extract-bottlenecks ($DEVICE)" "$BIN/extract" "${COMMON[@]}" --device "$DEVICE" --weights "$WEIGHTS"
step "train-top ($DEVICE)" "$BIN/train-top" "${COMMON[@]}" --device "$DEVICE" \
    --set "top.epochs=$TOP_EPOCHS"
step "finetune, view cache ($DEVICE)" "$BIN/finetune" "${COMMON[@]}" --device "$DEVICE" \
    --weights "$WEIGHTS" --set finetune.epochs=1 --set "finetune.views=$VIEWS"
cp "$WORK/artifacts/finetune/metrics.json" "$WORK/metrics-view-cache.json"
if [ "$LIVE" = 1 ]; then
    step "finetune, live ($DEVICE)" "$BIN/finetune" "${COMMON[@]}" --device "$DEVICE" \
        --weights "$WEIGHTS" --set finetune.epochs=1 --live
    cp "$WORK/artifacts/finetune/metrics.json" "$WORK/metrics-live.json"
fi
cleanup

echo
echo "== summary (wall-clock, each step's process start to end)"
printf '%s\n' "${SUMMARY[@]}"
if [ -s "$MEM_LOG" ]; then
    echo "peak GPU memory in use: $(sort -n "$MEM_LOG" | tail -n1) MiB"
fi
for m in "$WORK"/metrics-*.json; do
    [ -f "$m" ] || continue
    echo "-- $(basename "$m")"
    grep -E '"(mode|views|device|seconds_per_epoch|train_images_per_second|cache_seconds|training_seconds|saved_val_acc|saved_val_loss)"' "$m" |
        sed 's/^ */   /'
done
echo "== done; everything is in $WORK"
