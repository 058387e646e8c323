#!/usr/bin/env bash
# GPU check: the three methods on every backbone, on `--device cuda` and on `--device cpu`
# with the same seed and settings, with each stage's wall time, and the GPU's validation
# accuracy compared with the CPU's. Method 1 (the small convnet) runs once per device; for
# each backbone, methods 2 (extract + train-top) and 3 (finetune with its view cache) follow.
# Exits non-zero when a stage fails or when a GPU accuracy is further than the tolerance from
# the CPU's (the two devices add in other orders, so the figures differ a little, not a lot).
#
# Usage: scripts/gpu-check.sh [SOURCE_DIR]
#   SOURCE_DIR  labelled photos, Kaggle-style (`cat.12.jpg`) or one folder per class
#               (default: $LITTLEDATA_SOURCE, else ../shared/data/dogs-vs-cats/train);
#               split into GPU_CHECK_TRAIN + GPU_CHECK_VALIDATION images per class.
#
# Environment (all optional):
#   GPU_CHECK_DATA        an already split folder (train/ and validation/ class folders):
#                         used as it is, SOURCE_DIR and the split are skipped
#   GPU_CHECK_BIN         folder with the CUDA-built binaries (for example the unpacked bundle
#                         of scripts/gpu-bundle.sh); unset: `cargo build --release` with every
#                         crate's cuda feature into target/cuda
#   GPU_CHECK_RUN         a launcher put before each binary (for example `.gpu/bin/gpu-env.sh`,
#                         which sets LD_LIBRARY_PATH for the bundle)
#   GPU_CHECK_BACKBONES   default "vgg16 efficientnet_lite0"; their pipelines are
#                         pipelines/blog.toml and pipelines/efficientnet.toml
#   GPU_CHECK_DEVICES     default "cuda cpu" (the first is compared against the second)
#   GPU_CHECK_WORK        work folder (default: a new temporary folder)
#   GPU_CHECK_TRAIN, GPU_CHECK_VALIDATION   images per class in the split (default 300, 150)
#   GPU_CHECK_SMALL_EPOCHS, GPU_CHECK_TOP_EPOCHS, GPU_CHECK_FINETUNE_EPOCHS (default 5, 10, 2)
#   GPU_CHECK_VIEWS       cached views per training image for fine-tuning (default 2)
#   GPU_CHECK_TOLERANCE   largest accepted |GPU − CPU| validation accuracy (default 0.03)
#   LITTLEDATA_VGG16_WEIGHTS, LITTLEDATA_EFFICIENTNET_LITE0_WEIGHTS
#                         the backbones' weights (default: ../shared/models/...)
set -Eeuo pipefail
trap 'echo "gpu-check: failed at line $LINENO: $BASH_COMMAND" >&2' ERR
cd "$(dirname "$0")/.."
ROOT=$(pwd)
SHARED=${LITTLEDATA_SHARED:-$(cd .. && pwd)/shared}

die() {
    echo "gpu-check: error: $*" >&2
    exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

SOURCE=${1:-${LITTLEDATA_SOURCE:-$SHARED/data/dogs-vs-cats/train}}
export LITTLEDATA_VGG16_WEIGHTS=${LITTLEDATA_VGG16_WEIGHTS:-$SHARED/models/vgg16_imagenet_features.safetensors}
export LITTLEDATA_EFFICIENTNET_LITE0_WEIGHTS=${LITTLEDATA_EFFICIENTNET_LITE0_WEIGHTS:-$SHARED/models/efficientnet_lite0_imagenet.safetensors}
BACKBONES=${GPU_CHECK_BACKBONES:-vgg16 efficientnet_lite0}
DEVICES=${GPU_CHECK_DEVICES:-cuda cpu}
TRAIN=${GPU_CHECK_TRAIN:-300}
VALIDATION=${GPU_CHECK_VALIDATION:-150}
SMALL_EPOCHS=${GPU_CHECK_SMALL_EPOCHS:-5}
TOP_EPOCHS=${GPU_CHECK_TOP_EPOCHS:-10}
FINETUNE_EPOCHS=${GPU_CHECK_FINETUNE_EPOCHS:-2}
VIEWS=${GPU_CHECK_VIEWS:-2}
TOLERANCE=${GPU_CHECK_TOLERANCE:-0.03}
read -r -a RUN <<<"${GPU_CHECK_RUN:-}"

for n in "$TRAIN" "$VALIDATION" "$SMALL_EPOCHS" "$TOP_EPOCHS" "$FINETUNE_EPOCHS" "$VIEWS"; do
    [[ "$n" =~ ^[1-9][0-9]*$ ]] || die "the GPU_CHECK_* counts must be positive whole numbers, got '$n'"
done
pipeline_of() {
    case "$1" in
    vgg16) echo "$ROOT/pipelines/blog.toml" ;;
    efficientnet_lite0) echo "$ROOT/pipelines/efficientnet.toml" ;;
    *) die "no pipeline file for backbone '$1' (known: vgg16, efficientnet_lite0)" ;;
    esac
}
for b in $BACKBONES; do pipeline_of "$b" >/dev/null; done

if [[ " $DEVICES " == *" cuda"* ]]; then
    command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver on this machine"
    echo "== GPU: $(nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv,noheader | head -n1)"
fi
echo "== CPU: $(nproc) cores; devices: $DEVICES; backbones: $BACKBONES"

# --- The binaries ---------------------------------------------------------------------------
if [ -n "${GPU_CHECK_BIN:-}" ]; then
    BIN=$(cd "$GPU_CHECK_BIN" && pwd)
else
    command -v cargo >/dev/null || die "cargo not found (or set GPU_CHECK_BIN to prebuilt binaries)"
    command -v nvcc >/dev/null || die "nvcc not found: the CUDA build needs the CUDA toolkit on PATH"
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target/cuda}
    t=$(now)
    cargo build --release --locked -p prep -p extract -p train-top -p finetune -p train-small \
        --features "$(scripts/cuda-features.sh)"
    echo "== build: $(elapsed "$t") s"
    BIN=$CARGO_TARGET_DIR/release
fi
NEEDED=(extract train-top finetune train-small)
[ -n "${GPU_CHECK_DATA:-}" ] || NEEDED+=(prep)
for b in "${NEEDED[@]}"; do
    [ -x "$BIN/$b" ] || [ -f "$BIN/$b.xz" ] || die "$BIN/$b is missing"
done

WORK=${GPU_CHECK_WORK:-$(mktemp -d -t littledata-gpu-check.XXXXXX)}
mkdir -p "$WORK"
LOG=$WORK/gpu-check.log
: >"$LOG"
echo "== work folder: $WORK (log: $LOG)"

# --- The photos ----------------------------------------------------------------------------
if [ -n "${GPU_CHECK_DATA:-}" ]; then
    DATA=$(cd "$GPU_CHECK_DATA" && pwd)
    [ -d "$DATA/train" ] && [ -d "$DATA/validation" ] || die "$DATA has no train/ and validation/"
else
    [ -d "$SOURCE" ] || die "no photos at $SOURCE (give the folder as the first argument)"
    DATA=$WORK/data
    "${RUN[@]}" "$BIN/prep" split --pipeline "$ROOT/pipelines/blog.toml" --source "$SOURCE" \
        --set "data.dir=$DATA" --set "split.train=$TRAIN" --set "split.validation=$VALIDATION" \
        >>"$LOG" 2>&1 || die "prep split failed (see $LOG)"
fi
N_TRAIN=$(find "$DATA/train" -type f | wc -l)
N_VALIDATION=$(find "$DATA/validation" -type f | wc -l)
echo "== photos: $DATA ($N_TRAIN training, $N_VALIDATION validation)"

# --- The stages ----------------------------------------------------------------------------
declare -A ACC TOOK
FAILED=0
# stage KEY DEVICE PIPELINE ARTIFACTS METRICS_DIR BINARY ARGS...: runs one stage, records its
# wall time under KEY/DEVICE and, when METRICS_DIR is not "-", its validation accuracy.
stage() {
    local key=$1 device=$2 pipeline=$3 artifacts=$4 metrics=$5 bin=$6
    shift 6
    local t rc=0
    t=$(now)
    echo "-- $key on $device" >>"$LOG"
    "${RUN[@]}" "$BIN/$bin" --pipeline "$pipeline" --device "$device" \
        --set "data.dir=$DATA" --set "data.artifacts=$artifacts" "$@" >>"$LOG" 2>&1 || rc=$?
    TOOK[$key/$device]=$(elapsed "$t")
    if [ "$rc" -ne 0 ]; then
        echo "   $key on $device FAILED (exit $rc); the end of its output:"
        tail -n 5 "$LOG" | sed 's/^/   | /'
        ACC[$key/$device]=failed
        FAILED=1
        return 0
    fi
    if [ "$metrics" != - ]; then
        ACC[$key/$device]=$(python3 -c 'import json, sys; print("%.4f" % json.load(open(sys.argv[1]))["saved_val_acc"])' \
            "$artifacts/$metrics/metrics.json")
    fi
    printf '   %-34s %-5s %8s s  %s\n' "$key" "$device" "${TOOK[$key/$device]}" "${ACC[$key/$device]:-}"
}

ROWS=()
for device in $DEVICES; do
    echo "== $device"
    art=$WORK/$device
    stage "1. small convnet" "$device" "$ROOT/pipelines/blog.toml" "$art/small" small_cnn \
        train-small --set "small_cnn.epochs=$SMALL_EPOCHS"
    for b in $BACKBONES; do
        p=$(pipeline_of "$b")
        stage "2. $b extract" "$device" "$p" "$art/$b" - extract
        stage "2. $b top model" "$device" "$p" "$art/$b" top \
            train-top --set "top.epochs=$TOP_EPOCHS"
        stage "3. $b fine-tuned" "$device" "$p" "$art/$b" finetune \
            finetune --set "finetune.epochs=$FINETUNE_EPOCHS" --set "finetune.views=$VIEWS"
    done
done

# --- The comparison ------------------------------------------------------------------------
read -r -a DEVS <<<"$DEVICES"
A=${DEVS[0]}
B=${DEVS[1]:-}
echo
echo "== validation accuracy and wall time per stage (same seed; $N_TRAIN training and $N_VALIDATION validation images)"
printf '%-30s %10s %10s %8s %10s %10s\n' stage "$A acc" "${B:+$B acc}" "|diff|" "$A s" "${B:+$B s}"
KEYS=("1. small convnet")
for b in $BACKBONES; do KEYS+=("2. $b extract" "2. $b top model" "3. $b fine-tuned"); done
for k in "${KEYS[@]}"; do
    a=${ACC[$k/$A]:-} c=${ACC[$k/$B]:-} diff=
    if [[ "$a" =~ ^[0-9.]+$ && "$c" =~ ^[0-9.]+$ ]]; then
        diff=$(awk -v a="$a" -v c="$c" 'BEGIN { d = a - c; if (d < 0) d = -d; printf "%.4f", d }')
        if awk -v d="$diff" -v t="$TOLERANCE" 'BEGIN { exit !(d > t) }'; then
            diff="$diff !"
            FAILED=1
        fi
    fi
    printf '%-30s %10s %10s %8s %10s %10s\n' "$k" "${a:-—}" "${c:-—}" "${diff:-—}" \
        "${TOOK[$k/$A]:-—}" "${TOOK[$k/$B]:-—}"
done
echo "(|diff| above $TOLERANCE is marked !; the full log is $LOG)"
if [ "$FAILED" = 1 ]; then
    echo "== gpu-check: FAILED"
    exit 1
fi
echo "== gpu-check: passed"
