#!/usr/bin/env bash
# `extract --shard auto` for real on the single-node Slurm of scripts/slurm-local.sh: splits
# the photos (once), runs a TASKS-task array job of `extract --shard auto`, then a dependent
# `extract merge` job, then one plain `extract` into another artifacts folder, and compares the
# merged files with the single run's: the tensor data byte for byte (`cmp` of everything after
# the safetensors header), the tensor table, and the metadata key by key (only the creation
# time, and the file digest that covers it, may differ). Prints each step's wall time and the commands it ran.
#
# Usage: scripts/slurm-extract-trial.sh [WORK_DIR]   (default /tmp/slurm-run)
#
# Environment (optional):
#   BIN_DIR         the binaries prep and extract (default: target/release; build them first
#                   with `cargo build --release -p prep -p extract`)
#   SOURCE          labelled photos (default: $LITTLEDATA_SHARED/data/dogs-vs-cats/train,
#                   LITTLEDATA_SHARED defaulting to ../shared)
#   WEIGHTS         VGG16 weights (default: $LITTLEDATA_SHARED/models/vgg16_imagenet_features.safetensors)
#   TASKS           array size (default 4); CPUS_PER_TASK  CPUs (and threads) per task (default 1)
#   PIPELINE        pipeline file (default pipelines/blog.toml)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

die() {
    echo "slurm-extract-trial: error: $*" >&2
    exit 1
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
run() { # print, then run
    echo "+ $*"
    "$@"
}

W=${1:-/tmp/slurm-run}
SHARED=${LITTLEDATA_SHARED:-$(cd .. && pwd)/shared}
BIN=$(cd "${BIN_DIR:-target/release}" && pwd) || die "no binary folder ${BIN_DIR:-target/release}"
SOURCE=${SOURCE:-$SHARED/data/dogs-vs-cats/train}
WEIGHTS=${WEIGHTS:-$SHARED/models/vgg16_imagenet_features.safetensors}
TASKS=${TASKS:-4}
CPUS=${CPUS_PER_TASK:-1}
PIPELINE=$(realpath "${PIPELINE:-pipelines/blog.toml}")
for b in prep extract; do [ -x "$BIN/$b" ] || die "$BIN/$b is missing (cargo build --release -p prep -p extract)"; done
[ -f "$WEIGHTS" ] || die "no VGG16 weights at $WEIGHTS (set WEIGHTS)"
[[ "$TASKS" =~ ^[1-9][0-9]*$ && "$CPUS" =~ ^[1-9][0-9]*$ ]] || die "TASKS and CPUS_PER_TASK must be positive whole numbers"

scripts/slurm-local.sh start
mkdir -p "$W/logs"
CONFIG=(--pipeline "$PIPELINE" --set "data.dir=$W/data" --set "data.artifacts=$W/artifacts")
SINGLE=(--pipeline "$PIPELINE" --set "data.dir=$W/data" --set "data.artifacts=$W/artifacts-single")

if [ ! -d "$W/data/train" ]; then
    [ -d "$SOURCE" ] || die "no photos at $SOURCE (set SOURCE)"
    T=$(now)
    run "$BIN/prep" split "${CONFIG[@]}" --source "$SOURCE"
    echo "== split: $(elapsed "$T") s"
fi
rm -rf "$W/artifacts" "$W/artifacts-single" "$W"/logs/*

# The array job and the dependent merge.
q() { printf '%q ' "$@"; }
TASK_CMD="export RAYON_NUM_THREADS=\$SLURM_CPUS_PER_TASK; exec $(q "$BIN/extract" "${CONFIG[@]}" --weights "$WEIGHTS" --device cpu --shard auto)"
MERGE_CMD="exec $(q "$BIN/extract" merge "${CONFIG[@]}")"
T=$(now)
echo "+ sbatch --parsable --array=1-$TASKS --cpus-per-task=$CPUS --chdir=$ROOT --output=$W/logs/extract-%A_%a.out --wrap '$TASK_CMD'"
JOB=$(sbatch --parsable --array=1-"$TASKS" --cpus-per-task="$CPUS" --chdir="$ROOT" \
    --job-name=extract --output="$W/logs/extract-%A_%a.out" --wrap "$TASK_CMD")
echo "+ sbatch --parsable --dependency=afterok:$JOB --chdir=$ROOT --output=$W/logs/merge-%j.out --wrap '$MERGE_CMD'"
MERGE=$(sbatch --parsable --dependency=afterok:"$JOB" --chdir="$ROOT" --job-name=merge \
    --output="$W/logs/merge-%j.out" --wrap "$MERGE_CMD")
echo "== submitted array job $JOB ($TASKS tasks, $CPUS CPU each) and merge job $MERGE"
while [ -n "$(squeue -h -j "$JOB,$MERGE" 2>/dev/null)" ]; do sleep 2; done
ARRAY_S=$(elapsed "$T")
for f in "$W"/logs/extract-*.out "$W"/logs/merge-*.out; do
    echo "-- $(basename "$f")"
    tr '\r' '\n' <"$f" | grep -v '^\s*$' | tail -n 4
done
for f in train validation; do
    [ -f "$W/artifacts/bottleneck/$f.safetensors" ] || die "the merge wrote no $f.safetensors (see $W/logs)"
done
echo "== array + merge: $ARRAY_S s (submission to the merge's end)"

T=$(now)
echo "+ $BIN/extract ${SINGLE[*]} --weights $WEIGHTS --device cpu"
"$BIN/extract" "${SINGLE[@]}" --weights "$WEIGHTS" --device cpu 2>&1 | tr '\r' '\n' | grep -v '^\s*$' | tail -n 3
SINGLE_S=$(elapsed "$T")
echo "== single run: $SINGLE_S s"

# Compare: the data after the header byte for byte, then the header key by key.
header_len() { od -An -t u8 -N8 "$1" | tr -d ' '; }
STATUS=0
for f in train validation; do
    A=$W/artifacts/bottleneck/$f.safetensors
    B=$W/artifacts-single/bottleneck/$f.safetensors
    HA=$(header_len "$A") HB=$(header_len "$B")
    if cmp <(tail -c +$((9 + HA)) "$A") <(tail -c +$((9 + HB)) "$B"); then
        echo "== $f: tensor data identical ($(($(stat -c %s "$A") - 8 - HA)) bytes; headers $HA and $HB bytes)"
    else
        echo "== $f: TENSOR DATA DIFFERS"
        STATUS=1
    fi
    python3 - "$A" "$B" <<'EOF' || STATUS=1
import json, struct, sys
def header(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))
a, b = header(sys.argv[1]), header(sys.argv[2])
ma, mb = a.pop("__metadata__", {}), b.pop("__metadata__", {})
ok = a == b
print("   tensor table (dtype, shape, offsets):", "identical" if ok else "DIFFERS")
for k in sorted(set(ma) | set(mb)):
    if ma.get(k) != mb.get(k):
        print(f"   metadata {k}: merged {ma.get(k)!r} / single {mb.get(k)!r}")
        # The file digest covers the header, so it follows the creation time.
        ok = ok and k in ("littledata.created", "littledata.data_digest")
print("   metadata: every other key identical" if ok else "   METADATA DIFFERS beyond the creation time and the file digest")
sys.exit(0 if ok else 1)
EOF
done
echo "== summary: array of $TASKS x $CPUS CPU + merge $ARRAY_S s; single run ($(nproc) threads) $SINGLE_S s"
exit $STATUS
