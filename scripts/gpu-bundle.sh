#!/usr/bin/env bash
# Builds the stage binaries with CUDA on a machine without a GPU and packs them small, to be
# carried to a GPU machine: release build with the `cuda` feature of every workspace member
# that has one (scripts/cuda-features.sh), in target/cuda (the CPU build's cache stays valid),
# linked against stand-ins for the CUDA libraries (scripts/cuda-stubs.sh), then each binary
# stripped and compressed with `xz -9` into OUT_DIR, beside the launcher scripts/gpu-env.sh.
#
# Usage: scripts/gpu-bundle.sh OUT_DIR [EXTRA CARGO FLAGS...]   (for example .gpu)
#
# On the GPU machine: `OUT_DIR/gpu-env.sh extract --device cuda ...` unpacks the binaries
# once, puts the driver's libcuda.so.1 and PyTorch's cu13 libcublas/libcublasLt/libcurand/
# libnvrtc on LD_LIBRARY_PATH, and runs the binary. OUT_DIR/MANIFEST lists what was built
# from which commit. An OUT_DIR inside the repository is added to git's info/exclude
# (`git rev-parse --git-path info/exclude`, not .gitignore) when git does not ignore it yet.
#
# Environment (optional):
#   CUDA_COMPUTE_CAP     compute capability of candle's kernels (default 80: PTX that the
#                        driver compiles for 8.0 and every newer GPU, H100/H200 included)
#   GPU_BUNDLE_BINS      the binaries (default: prep extract train-top finetune train-small
#                        classify report, those that exist)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

die() {
    echo "gpu-bundle: error: $*" >&2
    exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

[ $# -ge 1 ] || die "usage: scripts/gpu-bundle.sh OUT_DIR [EXTRA CARGO FLAGS...]"
OUT=$1
shift
for tool in cargo python3 strip xz readelf; do
    command -v "$tool" >/dev/null || die "$tool not found"
done
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

# Keep an OUT_DIR inside the repository out of git (info/exclude, shared by all worktrees).
case "$OUT/" in
"$ROOT"/*)
    REL=${OUT#"$ROOT"/}
    if ! git check-ignore -q "$REL/" 2>/dev/null; then
        EXCLUDE=$(git rev-parse --path-format=absolute --git-path info/exclude)
        mkdir -p "$(dirname "$EXCLUDE")"
        echo "/$REL/" >>"$EXCLUDE"
        echo "gpu-bundle: added /$REL/ to $EXCLUDE"
    fi
    ;;
esac

T0=$(now)
ENV=$(scripts/cuda-toolkit.sh) || die "could not install the CUDA toolkit (scripts/cuda-toolkit.sh)"
eval "$ENV"
scripts/cuda-stubs.sh
FEATURES=$(scripts/cuda-features.sh)

# The wanted binaries that exist, and the packages that own them (plus every package with a
# cuda feature, so that `--features` names only selected packages).
WANTED=${GPU_BUNDLE_BINS:-prep extract train-top finetune train-small classify report}
read -r BINS PACKAGES < <(cargo metadata --no-deps --format-version 1 --locked | python3 -c '
import json, sys
wanted, features = sys.argv[1].split(), sys.argv[2].split()
owner = {t["name"]: p["name"] for p in json.load(sys.stdin)["packages"]
         for t in p["targets"] if "bin" in t["kind"]}
bins = [b for b in wanted if b in owner]
pkgs = sorted({owner[b] for b in bins} | {f.split("/")[0] for f in features})
print(",".join(bins), ",".join(pkgs))
' "$WANTED" "$FEATURES")
[ -n "$BINS" ] || die "none of the binaries $WANTED exists in the workspace"
IFS=, read -r -a BINS <<<"$BINS"
IFS=, read -r -a PACKAGES <<<"$PACKAGES"
PKG_ARGS=()
for p in "${PACKAGES[@]}"; do PKG_ARGS+=(-p "$p"); done

export CARGO_TARGET_DIR=$ROOT/target/cuda
echo "== nvcc: $(nvcc --version | tail -n1); CUDA_COMPUTE_CAP=$CUDA_COMPUTE_CAP; features: $FEATURES"
echo "== building ${BINS[*]} (packages ${PACKAGES[*]}) into $CARGO_TARGET_DIR/release"
T=$(now)
cargo build --release --locked "$@" "${PKG_ARGS[@]}" --features "$FEATURES"
BUILD_S=$(elapsed "$T")
echo "== build: $BUILD_S s"

BIN_DIR=$CARGO_TARGET_DIR/release
STRIPPED=$CARGO_TARGET_DIR/stripped
mkdir -p "$STRIPPED"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1048576 }'; }
size() { stat -c %s "$1"; }
TOTAL=(0 0 0)
ROWS=()
for b in "${BINS[@]}"; do
    [ -x "$BIN_DIR/$b" ] || die "$BIN_DIR/$b was not built"
    strip -o "$STRIPPED/$b" "$BIN_DIR/$b"
    xz -9 -T1 -c "$STRIPPED/$b" >"$OUT/$b.xz.tmp"
    mv -f "$OUT/$b.xz.tmp" "$OUT/$b.xz"
    rm -f "$OUT/$b" # a stale unpacked copy would shadow the new one
    raw=$(size "$BIN_DIR/$b") stripped=$(size "$STRIPPED/$b") packed=$(size "$OUT/$b.xz")
    TOTAL=($((TOTAL[0] + raw)) $((TOTAL[1] + stripped)) $((TOTAL[2] + packed)))
    needed=$(readelf -d "$BIN_DIR/$b" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
    ROWS+=("$(printf '%-12s %9s %9s %9s   %s' "$b" "$(mib "$raw")" "$(mib "$stripped")" "$(mib "$packed")" "$needed")")
done
cp scripts/gpu-env.sh "$OUT/gpu-env.sh"
chmod +x "$OUT/gpu-env.sh"
{
    echo "littledata GPU bundle"
    echo "commit: $(git rev-parse HEAD)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    echo "nvcc: $(nvcc --version | tail -n1)"
    echo "CUDA_COMPUTE_CAP: $CUDA_COMPUTE_CAP"
    echo "features: $FEATURES"
    echo "run: ./gpu-env.sh BINARY ARGS... (unpacks the .xz files once)"
    (cd "$OUT" && sha256sum ./*.xz)
} >"$OUT/MANIFEST"

echo
echo "== sizes, MiB (raw / stripped / xz -9) and the libraries each binary needs"
printf '%-12s %9s %9s %9s   %s\n' binary raw stripped xz NEEDED
printf '%s\n' "${ROWS[@]}"
printf '%-12s %9s %9s %9s\n' total "$(mib "${TOTAL[0]}")" "$(mib "${TOTAL[1]}")" "$(mib "${TOTAL[2]}")"
echo "== bundle: $OUT ($(du -sh "$OUT" | cut -f1)); $(elapsed "$T0") s in all"
