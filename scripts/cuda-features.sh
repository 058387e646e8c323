#!/usr/bin/env bash
# Prints the Cargo features that turn CUDA on across the workspace: `<crate>/cuda` for every
# workspace member that declares a `cuda` feature, space-separated on one line (for
# `cargo build --features "$(scripts/cuda-features.sh)"`). Reads
# `cargo metadata --no-deps`, so a crate that gains a `cuda` feature is picked up by itself.
#
# Usage: scripts/cuda-features.sh
# Needs cargo and python3 (to read cargo's JSON).
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
    echo "cuda-features: error: $*" >&2
    exit 1
}
command -v cargo >/dev/null || die "cargo not found"
command -v python3 >/dev/null || die "python3 not found (it reads cargo metadata's JSON)"

META=$(cargo metadata --no-deps --format-version 1 --locked) || die "cargo metadata failed"
FEATURES=$(printf '%s' "$META" | python3 -c '
import json, sys
meta = json.load(sys.stdin)
members = set(meta["workspace_members"])
print(" ".join(sorted(p["name"] + "/cuda" for p in meta["packages"]
                      if p["id"] in members and "cuda" in p["features"])))
')
[ -n "$FEATURES" ] || die "no workspace member declares a \`cuda\` feature"
echo "$FEATURES"
