#!/usr/bin/env bash
# The CUDA toolkit (nvcc, headers, runtime) from PyPI, for building with `--features cuda` on a
# machine without a system CUDA install (no GPU needed: it compiles, it does not run).
#
# Usage:
#   eval "$(scripts/cuda-toolkit.sh)"     # install when missing, then export the variables below
#   scripts/cuda-toolkit.sh               # the same, but only print the `export` lines
#   scripts/cuda-toolkit.sh --root        # print the toolkit folder (nvidia/cu13) only
#
# It prints `export` lines on stdout (and nothing else there; progress and errors go to
# stderr), so it is run and eval'd rather than sourced:
#   PATH              the toolkit's bin/ (nvcc) first
#   CUDA_HOME, CUDA_PATH, CUDA_ROOT, CUDA_TOOLKIT_ROOT_DIR
#                     the toolkit folder (cudarc and candle-kernels look there)
#   CUDA_COMPUTE_CAP  $CUDA_COMPUTE_CAP if set, else 80 (candle-kernels otherwise asks
#                     nvidia-smi, which a machine without a GPU does not have)
#   LD_LIBRARY_PATH   the toolkit's lib/ appended (libcudart, libnvvm for the build tools)
#
# The toolkit is `cuda-toolkit[nvcc,cccl]==$VERSION` (below) installed with
# `pip install --target` into $LITTLEDATA_CUDA_TOOLKIT (default
# ~/.cache/littledata/cuda-toolkit-$VERSION); the files land in `site-packages/nvidia/cu13`.
# A finished install is marked by a `.complete` file holding the version and reused as it is,
# so a second call takes milliseconds; an interrupted install is redone from scratch.
#
# Why 13.0.3.0: the GPU machines run driver 580 (CUDA 13.0), and PTX from a newer nvcc than
# the driver's CUDA fails to load there (CUDA_ERROR_UNSUPPORTED_PTX_VERSION); cudarc 0.19
# also refuses toolkits newer than 13.4. 13.0.3.0 is the last 13.0 release on PyPI and the
# only 13.0.x one that pins every component to 13.0 (13.0.0–13.0.2 leave nvidia-cuda-crt and
# nvidia-nvvm unpinned, so pip pulls today's 13.5 compiler front end into a 13.0 nvcc).
#
# Environment (optional):
#   LITTLEDATA_CUDA_TOOLKIT  where to install (default above)
#   PYTHON                   the Python with pip to install with (default: python3)
set -euo pipefail

VERSION=13.0.3.0
EXTRAS=nvcc,cccl

die() {
    echo "cuda-toolkit: error: $*" >&2
    exit 1
}

MODE=env
case "${1:-}" in
"") ;;
--root) MODE=root ;;
-h | --help)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
    exit 0
    ;;
*) die "unknown argument '$1' (expected nothing, --root or --help)" ;;
esac

DIR=${LITTLEDATA_CUDA_TOOLKIT:-${HOME:?HOME is not set}/.cache/littledata/cuda-toolkit-$VERSION}
SITE=$DIR/site-packages
ROOT=$SITE/nvidia/cu13
MARK=$DIR/.complete

if [ "$(cat "$MARK" 2>/dev/null || true)" != "$VERSION" ] || [ ! -x "$ROOT/bin/nvcc" ]; then
    PY=${PYTHON:-python3}
    command -v "$PY" >/dev/null || die "$PY not found: installing the toolkit from PyPI needs Python 3 with pip (set PYTHON)"
    "$PY" -m pip --version >/dev/null 2>&1 || die "$PY has no pip (install python3-pip, or set PYTHON)"
    echo "cuda-toolkit: installing cuda-toolkit[$EXTRAS]==$VERSION from PyPI into $DIR (about 270 MB) ..." >&2
    mkdir -p "$(dirname "$DIR")"
    TMP=$(mktemp -d "$DIR.partial.XXXXXX")
    chmod 755 "$TMP"
    trap 'rm -rf "$TMP"' EXIT
    PIP_ROOT_USER_ACTION=ignore "$PY" -m pip install --disable-pip-version-check --no-input --quiet --no-cache-dir \
        --target "$TMP/site-packages" "cuda-toolkit[$EXTRAS]==$VERSION" >&2 ||
        die "pip could not install cuda-toolkit[$EXTRAS]==$VERSION (is PyPI reachable?)"
    [ -x "$TMP/site-packages/nvidia/cu13/bin/nvcc" ] ||
        die "the installed wheels have no nvidia/cu13/bin/nvcc; the package layout changed"
    echo "$VERSION" >"$TMP/.complete"
    rm -rf "$DIR"
    mv "$TMP" "$DIR"
    trap - EXIT
    echo "cuda-toolkit: installed $("$ROOT/bin/nvcc" --version | tail -n1)" >&2
fi

if [ "$MODE" = root ]; then
    echo "$ROOT"
    exit 0
fi

q() { printf '%q' "$1"; }
echo "export PATH=$(q "$ROOT/bin"):\"\$PATH\""
for v in CUDA_HOME CUDA_PATH CUDA_ROOT CUDA_TOOLKIT_ROOT_DIR; do
    echo "export $v=$(q "$ROOT")"
done
echo "export CUDA_COMPUTE_CAP=$(q "${CUDA_COMPUTE_CAP:-80}")"
echo "export LD_LIBRARY_PATH=\"\${LD_LIBRARY_PATH:+\$LD_LIBRARY_PATH:}\"$(q "$ROOT/lib")"
