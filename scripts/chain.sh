#!/usr/bin/env bash
# The whole post with one pipeline file, stage by stage:
#   split (only when <data.dir>/train does not exist) → preview → train-small →
#   extract-bottlenecks → train-top → finetune (skipped for a backbone that cannot be
#   fine-tuned) → calibrate each model (its temperature, fitted on the validation split) →
#   evaluate each model (small_cnn, top, finetune) on <data.dir>/validation and, when it exists, <data.dir>/test, into
#   <data.artifacts>/<model>/evaluation/<split>.json → audit (label issues, copies, leakage,
#   strays and the learning curve from the cached features) → report.
# Every stage but preview and report (a second each) checks its artifacts first and prints
# "up to date" instead of redoing work, so a rerun with nothing changed takes seconds, and a
# changed setting reruns the stages that use it.
# The first stage that fails stops the run. At the end a table gives each stage's wall time and
# status (ran, up to date, skipped, failed).
#
# Usage: scripts/chain.sh [--summary FILE] PIPELINE [--set SECTION.KEY=VALUE | --seed N]...
#   PIPELINE     the pipeline file (`just all` passes pipelines/blog.toml, `just demo`
#                pipelines/demo.toml)
#   --set, --seed  passed to every stage that reads the pipeline file
#   --summary FILE also write the table as tab-separated `stage, seconds, status` lines
#
# Environment: CARGO_FLAGS, the cargo flags of the one build at the start (default --release);
# BIN_DIR, a folder holding binaries already built (for example target/debug after `just test`'s
# `cargo build --workspace --bins --tests`): no build then.
set -euo pipefail
export LC_NUMERIC=C # a decimal point in $EPOCHREALTIME and awk
cd "$(dirname "$0")/.."

summary=""
if [[ "${1:-}" == --summary ]]; then
    summary=${2:?--summary needs a file}
    shift 2
fi
if [[ $# -lt 1 ]]; then
    echo "usage: scripts/chain.sh [--summary FILE] PIPELINE [--set SECTION.KEY=VALUE | --seed N]..." >&2
    exit 2
fi
pipeline_file=$1
shift
config=(--pipeline "$pipeline_file" "$@")
read -r -a cargo_flags <<<"${CARGO_FLAGS---release}"

stages=() seconds=() statuses=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT

print_table() {
    local i total=0
    printf '\n%-34s %9s  %s\n' stage seconds status
    for i in "${!stages[@]}"; do
        printf '%-34s %9s  %s\n' "${stages[i]}" "${seconds[i]}" "${statuses[i]}"
        total=$(awk -v a="$total" -v b="${seconds[i]}" 'BEGIN { printf "%.1f", a + b }')
    done
    printf '%-34s %9s\n' total "$total"
    if [[ -n "$summary" ]]; then
        mkdir -p "$(dirname "$summary")"
        for i in "${!stages[@]}"; do
            printf '%s\t%s\t%s\n' "${stages[i]}" "${seconds[i]}" "${statuses[i]}"
        done >"$summary"
    fi
}

record() { # NAME SECONDS STATUS
    stages+=("$1") seconds+=("$2") statuses+=("$3")
}

# run_stage NAME COMMAND...: runs one stage with its output on the console, times it, and
# reads its status from the last line it printed; stops the run when it fails.
run_stage() {
    local name=$1 start rc status last
    shift
    printf '\n== %s\n' "$name"
    start=$EPOCHREALTIME
    set +e
    # tee ignores Ctrl-C, so that a stage that stops cleanly on it can still print.
    "$@" | (trap '' INT && tee "$log")
    rc=${PIPESTATUS[0]}
    set -e
    last=$(tail -n 1 "$log")
    if [[ $rc -ne 0 ]]; then
        status="failed (exit status $rc)"
    elif [[ "$last" == interrupted* ]]; then
        status=interrupted rc=130
    elif [[ "$last" == *"up to date"* ]]; then
        status="up to date"
    else
        status=ran
    fi
    record "$name" "$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')" "$status"
    if [[ $rc -ne 0 ]]; then
        echo "error: stage \`$name\` ${status}: its message is above; the stages after it did not run" >&2
        print_table
        exit "$rc"
    fi
}

# Builds every binary the stages need in one cargo build (its progress on stderr) and prints
# the folder they are in.
build() {
    local packages=(pipeline prep preview train-small extract train-top audit finetune classify report)
    local exe
    exe=$(cargo build "${cargo_flags[@]}" "${packages[@]/#/--package=}" \
        --message-format=json-render-diagnostics |
        sed -n 's/^{"reason":"compiler-artifact".*"kind":\["bin"\].*"executable":"\([^"]*\)".*/\1/p' |
        tail -n 1) || return
    if [[ -z "$exe" ]]; then
        echo "error: cargo build named no binaries" >&2
        return 1
    fi
    echo "binaries in $(dirname "$exe")"
}

# One build first, so that no stage's time includes compiling; the stages run what it built.
if [[ -n "${BIN_DIR:-}" ]]; then
    for exe in pipeline prep preview train-small extract train-top audit finetune classify report; do
        if [[ ! -x "$BIN_DIR/$exe" ]]; then
            echo "error: BIN_DIR=$BIN_DIR has no $exe binary; build it or unset BIN_DIR" >&2
            exit 1
        fi
    done
    bin=$BIN_DIR
    record build 0.0 "skipped (binaries in $bin)"
else
    run_stage build build
    bin=$(tail -n 1 "$log")
    bin=${bin#binaries in }
fi

# setting KEY: the effective value of a setting, as the stages see it.
setting() {
    "$bin/pipeline" get "${config[@]}" "$1"
}
data=$(setting data.dir)
artifacts=$(setting data.artifacts)
weights=$(setting bottleneck.weights)
backbone=$(setting bottleneck.backbone)

if [[ -d "$data/train" ]]; then
    record split 0.0 "skipped ($data/train exists)"
else
    run_stage split "$bin/prep" split "${config[@]}"
fi
run_stage preview "$bin/preview" "${config[@]}"
run_stage train-small "$bin/train-small" "${config[@]}"
run_stage extract-bottlenecks "$bin/extract" "${config[@]}"
run_stage train-top "$bin/train-top" "${config[@]}"
models=(small_cnn top)
# Read the whole list before matching: `… | grep -q` would close the pipe at the first match,
# and under pipefail the writer's broken pipe would count as "not in the list".
finetunable=$("$bin/pipeline" backbones --finetune)
if grep -qx "$backbone" <<<"$finetunable"; then
    run_stage finetune "$bin/finetune" "${config[@]}"
    models+=(finetune)
else
    record finetune 0.0 "skipped (not supported for $backbone)"
fi
weights_arg=()
if [[ -n "$weights" ]]; then
    weights_arg=(--weights "$weights")
fi
seed=$(setting data.seed)
for model in "${models[@]}"; do
    run_stage "calibrate $model" "$bin/classify" calibrate \
        --model "$artifacts/$model" --data "$data/validation" --seed "$seed" "${weights_arg[@]}"
done
for model in "${models[@]}"; do
    for split in validation test; do
        [[ -d "$data/$split" ]] || continue
        run_stage "evaluate $model on $split" "$bin/classify" evaluate \
            --model "$artifacts/$model" --data "$data/$split" \
            --json "$artifacts/$model/evaluation/$split.json" "${weights_arg[@]}"
    done
done
# The audit reads the evaluations, to give each model's accuracy without leaking photos.
run_stage audit "$bin/audit" "${config[@]}"
run_stage report "$bin/report" "${config[@]}"

print_table
echo "report: $artifacts/report/report.html"
