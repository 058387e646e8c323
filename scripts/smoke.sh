#!/usr/bin/env bash
# Smoke run of the whole chain (`just smoke`, and the end of `just test`): scripts/chain.sh with
# pipelines/smoke.toml on a handful of the shared photos, into target/smoke/ (wiped first). Then
# the chain runs a second time, and the smoke run fails unless every stage with artifacts
# reports them up to date; last, the report must exist.
#
# Needs LITTLEDATA_SHARED (the folder with data/dogs-vs-cats/train and the VGG16 weights in
# models/). Without it the run is skipped with a note, except under CI (`CI` set): a failure.
# Environment: CARGO_FLAGS and BIN_DIR, as for scripts/chain.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

if [[ -z "${LITTLEDATA_SHARED:-}" ]]; then
    if [[ -n "${CI:-}" ]]; then
        echo "error: LITTLEDATA_SHARED must name the shared data folder when CI is set" >&2
        exit 1
    fi
    echo "note: LITTLEDATA_SHARED is not set; skipping the smoke run of the chain" >&2
    exit 0
fi
export LITTLEDATA_SOURCE="$LITTLEDATA_SHARED/data/dogs-vs-cats/train"
if [[ ! -d "$LITTLEDATA_SOURCE" ]]; then
    echo "error: $LITTLEDATA_SOURCE: no such folder (LITTLEDATA_SHARED=$LITTLEDATA_SHARED)" >&2
    exit 1
fi
if [[ -z "${LITTLEDATA_VGG16_WEIGHTS:-}" ]]; then
    export LITTLEDATA_VGG16_WEIGHTS="$LITTLEDATA_SHARED/models/vgg16_imagenet_features.safetensors"
fi

pipeline=pipelines/smoke.toml
dir=target/smoke # the folder pipelines/smoke.toml writes under
rm -rf "$dir"
start=$EPOCHREALTIME
scripts/chain.sh --summary "$dir/first.tsv" "$pipeline"
printf '\n== the same chain again: every stage must be up to date\n'
scripts/chain.sh --summary "$dir/second.tsv" "$pipeline"

# The build always runs (cargo finds nothing to do); preview and report keep no record of what
# they were made from and are redone (each takes about a second).
redone=$(awk -F '\t' '$1 != "build" && $1 != "preview" && $1 != "report" &&
    $3 != "up to date" && $3 !~ /^skipped/' "$dir/second.tsv")
if [[ -n "$redone" ]]; then
    echo "error: smoke: the second run redid stages whose artifacts should be up to date:" >&2
    echo "$redone" >&2
    exit 1
fi
report="$dir/artifacts/report/report.html"
if [[ ! -s "$report" ]]; then
    echo "error: smoke: $report was not written" >&2
    exit 1
fi
echo "smoke: the chain ran, a rerun found every stage up to date, and $report exists" \
    "($(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }') s)"
