#!/usr/bin/env bash
# What the audit finds on the shared photos, clean and with planted faults, and how long it
# takes with the features cached.
#
#   scripts/bench/audit_planted.sh [PIPELINE]
#
# PIPELINE defaults to pipelines/efficientnet.toml (pipelines/blog.toml: VGG16 features).
# Steps, each printed with its wall time:
#   1. the standard split (`prep split`, 1000 + 500 photos per class) in data/, when missing;
#   2. `extract` of its features and `audit --force` on them (the clean photos);
#   3. `audit plant`: a copy of data/ in $OUT/data with 5 % of the training labels flipped, 20
#      training photos copied into validation (exact, re-encoded, shrunk) and 10 strays;
#   4. `extract` and `audit --force` of the planted copy, then `audit score`: recall and
#      precision per fault.
#
# Environment:
#   BIN_DIR  where the release binaries are (default target/release; build them with
#            `cargo build --release -p prep -p extract -p audit`)
#   OUT      the planted copy's folder (default target/audit-planted; replaced)
#   LITTLEDATA_SOURCE, the backbone's weights variable: as for the stages.
set -euo pipefail
cd "$(dirname "$0")/../.."

pipeline=${1:-pipelines/efficientnet.toml}
bin=${BIN_DIR:-target/release}
out=${OUT:-target/audit-planted}
for exe in prep extract audit pipeline; do
    [[ -x "$bin/$exe" ]] || { echo "error: no $bin/$exe; build the release binaries" >&2; exit 1; }
done
timed() { # LABEL COMMAND...
    local label=$1 start
    shift
    start=$EPOCHREALTIME
    "$@"
    awk -v l="$label" -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "== %s: %.1f s\n", l, b - a }'
}
data=$("$bin/pipeline" get --pipeline "$pipeline" data.dir)
artifacts=$("$bin/pipeline" get --pipeline "$pipeline" data.artifacts)
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); threads ${RAYON_NUM_THREADS:-$(nproc)}"
echo "ISA: $(grep -m1 -o -w -E 'avx512f|avx512_bf16|avx2|fma' /proc/cpuinfo | sort -u | tr '\n' ' ')"
[[ -d "$data/train" ]] || timed "split" "$bin/prep" split --pipeline "$pipeline"
timed "extract (clean)" "$bin/extract" --pipeline "$pipeline"
timed "audit (clean, features cached)" "$bin/audit" --pipeline "$pipeline" --force --show 40

rm -rf "$out"
timed "plant" "$bin/audit" plant --clean "$data" --out "$out/data"
planted=(--pipeline "$pipeline" --set "data.dir=\"$out/data\"" --set "data.artifacts=\"$out/artifacts\"")
timed "extract (planted)" "$bin/extract" "${planted[@]}"
timed "audit (planted, features cached)" "$bin/audit" "${planted[@]}" --force --show 5
"$bin/audit" score --audit "$out/artifacts/audit/audit.json" --planted "$out/data/planted.json"
