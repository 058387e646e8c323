#!/usr/bin/env bash
# Launcher for the CUDA binaries of scripts/gpu-bundle.sh on a GPU machine: finds the CUDA
# libraries they need (the driver's libcuda.so.1; libcudart, libcublas, libcublasLt, libcurand
# and libnvrtc from the `nvidia` Python packages that PyTorch installs), puts them on
# LD_LIBRARY_PATH, unpacks the bundle's *.xz binaries on first use, checks that the binary's
# libraries resolve, and runs it.
#
# Usage (it lives in the bundle folder, beside the binaries):
#   .gpu/gpu-env.sh extract --device cuda ...   # run a bundled binary (or any command)
#   eval "$(.gpu/gpu-env.sh)"                    # only print (and so set) LD_LIBRARY_PATH
#
# Environment (optional):
#   PYTHON              the Python whose `nvidia` packages to use (default: python3)
#   CUDA_LIBRARY_PATH   extra folders with the CUDA libraries, searched first (colon-separated)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
die() {
    echo "gpu-env: error: $*" >&2
    exit 1
}

# Unpack the bundled binaries once (xz -9 files beside this script).
for packed in "$HERE"/*.xz; do
    [ -e "$packed" ] || continue
    bin=${packed%.xz}
    if [ ! -x "$bin" ] || [ "$packed" -nt "$bin" ]; then
        command -v xz >/dev/null || die "xz not found: cannot unpack $packed"
        xz -dc "$packed" >"$bin.tmp" && chmod +x "$bin.tmp" && mv -f "$bin.tmp" "$bin"
    fi
done

# Folders with the CUDA libraries: CUDA_LIBRARY_PATH, then every `nvidia` package folder's
# cu13/lib, cu12/lib and per-library lib/ folders (older wheels: nvidia/cublas/lib).
DIRS=()
IFS=: read -r -a EXTRA <<<"${CUDA_LIBRARY_PATH:-}"
for d in "${EXTRA[@]}"; do [ -n "$d" ] && [ -d "$d" ] && DIRS+=("$d"); done
PY=${PYTHON:-python3}
if command -v "$PY" >/dev/null; then
    # `nvidia` is a namespace package (no __file__): use its __path__.
    NV=$("$PY" -c 'import nvidia; print("\n".join(nvidia.__path__))' 2>/dev/null || true)
    while IFS= read -r root; do
        [ -n "$root" ] || continue
        for d in "$root"/cu13/lib "$root"/cu12/lib "$root"/*/lib; do
            [ -d "$d" ] && DIRS+=("$d")
        done
    done <<<"$NV"
fi
have() { # library file name: found in DIRS or the dynamic linker's cache
    local d
    for d in "${DIRS[@]}"; do [ -e "$d/$1" ] && return 0; done
    ldconfig -p 2>/dev/null | grep -q "[[:space:]]$1 "
}
for lib in libcuda.so.1 libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
    have "$lib" || echo "gpu-env: warning: $lib not found (driver for libcuda; PyTorch's nvidia-* cu13 packages or CUDA_LIBRARY_PATH for the rest)" >&2
done
for d in "${DIRS[@]}"; do
    case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) LD_LIBRARY_PATH=$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ;; esac
done
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}

if [ $# -eq 0 ]; then
    printf 'export LD_LIBRARY_PATH=%q\n' "$LD_LIBRARY_PATH"
    exit 0
fi

CMD=$1
shift
# A bare name of a bundled binary runs the bundled one.
if [[ "$CMD" != */* ]] && [ -x "$HERE/$CMD" ]; then
    CMD=$HERE/$CMD
fi
if [ -f "$CMD" ] && command -v ldd >/dev/null; then
    MISSING=$({ ldd "$CMD" 2>/dev/null || true; } | awk '/not found/ { print $1 }' | tr '\n' ' ')
    [ -z "$MISSING" ] || die "$CMD needs ${MISSING% } and they are not found (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
fi
exec "$CMD" "$@"
