#!/usr/bin/env bash
# Load test of `classify serve`: images/s and latency at 1, 8 and 32 concurrent clients.
#
#   scripts/bench/serve_load.sh MODEL_DIR PHOTOS_DIR [OUT]
#
# Starts `classify serve --model MODEL_DIR` on a free loopback port (127.0.0.1:0, the port
# read from its `listening on http://ADDR` line), waits for GET /healthz, then for each
# concurrency in CONNS runs `wrk` with scripts/bench/wrk_predict.lua, which POSTs the bytes of
# PHOTO_COUNT real photos from PHOTOS_DIR (read once at wrk's start, taken evenly spaced from
# the sorted list, cycled through per request): first a WARMUP-second warm-up (discarded), then
# DURATION seconds measured, wrk threads = min(connections, WRK_THREADS). At the end it reads
# the server's peak RSS (VmHWM in /proc/PID/status), stops it with SIGTERM and checks that it
# exited 0 (it drains the requests in flight first).
#
# MODEL_DIR: a model artifact folder (artifacts/top, ...) or its model.safetensors.
# PHOTOS_DIR: JPEG/PNG photos, searched recursively (e.g. $LITTLEDATA_SHARED/data/dogs-vs-cats/train).
# OUT: a folder for server.log, wrk-C.txt (wrk's own output per concurrency) and results.tsv;
#      default a temporary folder, removed at the end.
#
# Environment:
#   BIN_DIR       where `classify` is (default target/release; build it with
#                 `cargo build --release -p classify`)
#   THREADS       the server's compute threads: RAYON_NUM_THREADS (default 2)
#   SERVER_CPUS   pin the server with `taskset -c SERVER_CPUS` (e.g. 0-1; default: not pinned)
#   WRK_CPUS      pin wrk likewise (default: not pinned)
#   CONNS         the concurrencies (default "1 8 32")
#   DURATION      measured seconds per concurrency (default 20)
#   WARMUP        warm-up seconds per concurrency (default 3; 0: none)
#   PHOTO_COUNT   photos loaded by the wrk script (default 64)
#   WRK_THREADS   the most wrk threads (default 2)
#   WRK_TIMEOUT   wrk's per-request timeout (default 30s; a slower answer counts as an error)
#   SERVE_ARGS    extra `classify serve` arguments (e.g. "--max-batch 8 --batch-wait-ms 5")
# Needs wrk (Debian package `wrk`): when it is missing, the script says so and installs it
# with apt-get (as root), or stops if it cannot.
#
# Prints the CPU (model name, avx512f/avx2), the settings, one table line per concurrency
#   clients  images/s  p50 ms  p99 ms  errors
# (images/s = requests/s, one image per request; errors = non-2xx answers + socket errors and
# timeouts, itemised below the table when any), the server's peak RSS, and whether it exited
# 0 on SIGTERM. Exits non-zero when the server fails to start, does not exit 0, or any request
# failed.
set -euo pipefail
cd "$(dirname "$0")/../.."

usage="usage: scripts/bench/serve_load.sh MODEL_DIR PHOTOS_DIR [OUT]"
model="${1:?$usage}"
photos="${2:?$usage}"
out="${3:-}"
bin="${BIN_DIR:-target/release}/classify"
threads="${THREADS:-2}"
conns_list="${CONNS:-1 8 32}"
duration="${DURATION:-20}"
warmup="${WARMUP:-3}"
photo_count="${PHOTO_COUNT:-64}"
wrk_threads_max="${WRK_THREADS:-2}"
wrk_timeout="${WRK_TIMEOUT:-30s}"
lua="scripts/bench/wrk_predict.lua"

[ -x "$bin" ] || { echo "error: $bin not found; run cargo build --release -p classify (or set BIN_DIR)" >&2; exit 1; }
[ -e "$model" ] || { echo "error: model $model not found" >&2; exit 1; }
[ -d "$photos" ] || { echo "error: photo folder $photos not found" >&2; exit 1; }
photos="$(cd "$photos" && pwd)"

if ! command -v wrk >/dev/null 2>&1; then
    echo "wrk is not installed: installing the Debian package wrk with apt-get" >&2
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq >&2 && apt-get install -y -qq wrk >&2
    else
        echo "error: cannot install wrk here (needs root and apt-get): install the package wrk" >&2
        exit 1
    fi
fi

if [ -z "$out" ]; then
    out="$(mktemp -d)"
    remove_out=1
else
    mkdir -p "$out"
    remove_out=0
fi

pin() { # pin CPUS CMD...: CMD under `taskset -c CPUS` when CPUS is set
    local cpus="$1"; shift
    if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi
}

# shellcheck source=scripts/bench/serve_lib.sh
source scripts/bench/serve_lib.sh
cleanup() {
    kill_server
    if [ "$remove_out" = 1 ]; then rm -rf "$out"; fi
}
trap cleanup EXIT

# The CPU.
cpu_model="$(grep -m1 '^model name' /proc/cpuinfo | sed 's/^[^:]*: *//' || true)"
flags="$(grep -m1 '^flags' /proc/cpuinfo || true)"
has() { if grep -qw "$1" <<<"$flags"; then echo yes; else echo no; fi; }
echo "cpu: ${cpu_model:-unknown} ($(nproc) cores visible; avx512f: $(has avx512f), avx2: $(has avx2))"
echo "server: $bin serve --model $model${SERVE_ARGS:+ $SERVE_ARGS} (RAYON_NUM_THREADS=$threads${SERVER_CPUS:+, taskset -c $SERVER_CPUS})"
echo "load: wrk $(wrk --version 2>&1 | head -n1 | awk '{print $2}'), up to $photo_count photos from $photos, ${warmup}s warm-up + ${duration}s per concurrency${WRK_CPUS:+, wrk on cpus $WRK_CPUS}"

# Start the server on a free port; its stdout says which.
log="$out/server.log"
# shellcheck disable=SC2206 # SERVE_ARGS is a list of words
server_cmd=("$bin" serve --model "$model" --addr 127.0.0.1:0 ${SERVE_ARGS:-})
if [ -n "${SERVER_CPUS:-}" ]; then server_cmd=(taskset -c "$SERVER_CPUS" "${server_cmd[@]}"); fi
start_server "$log" "$threads" "${server_cmd[@]}"
echo "server: pid $server_pid at $url"
echo

results="$out/results.tsv"
printf 'clients\timages_per_s\tp50_ms\tp99_ms\terrors\tnon2xx\tsocket_errors\n' >"$results"
printf '%-8s %9s %8s %8s %7s\n' clients images/s "p50 ms" "p99 ms" errors
total_errors=0
details=""
for c in $conns_list; do
    t=$(( c < wrk_threads_max ? c : wrk_threads_max ))
    if [ "$warmup" != 0 ]; then
        pin "${WRK_CPUS:-}" wrk -t"$t" -c"$c" -d"${warmup}s" --timeout "$wrk_timeout" -s "$lua" \
            "$url" -- "$photos" "$photo_count" >"$out/wrk-$c-warmup.txt" 2>&1 \
            || { echo "error: wrk (warm-up, $c connections) failed:" >&2; cat "$out/wrk-$c-warmup.txt" >&2; exit 1; }
    fi
    pin "${WRK_CPUS:-}" wrk -t"$t" -c"$c" -d"${duration}s" --timeout "$wrk_timeout" -s "$lua" \
        "$url" -- "$photos" "$photo_count" >"$out/wrk-$c.txt" 2>&1 \
        || { echo "error: wrk ($c connections) failed:" >&2; cat "$out/wrk-$c.txt" >&2; exit 1; }
    line="$(grep '^RESULT ' "$out/wrk-$c.txt" | tail -n1)"
    [ -n "$line" ] || { echo "error: no RESULT line from wrk ($c connections):" >&2; cat "$out/wrk-$c.txt" >&2; exit 1; }
    field() { sed -E "s/.* $1=([^ ]+).*/\1/" <<<"$line"; }
    rps="$(field rps)"; p50="$(field p50_ms)"; p99="$(field p99_ms)"; non2xx="$(field non2xx)"
    sock=$(( $(field connect) + $(field read) + $(field write) + $(field timeout) ))
    errors=$(( non2xx + sock ))
    total_errors=$(( total_errors + errors ))
    if [ "$errors" != 0 ]; then
        details+="  $c clients: $non2xx non-2xx, connect $(field connect), read $(field read), write $(field write), timeout $(field timeout) (of $(field requests) requests)"$'\n'
    fi
    loaded="$(field photos) photos, mean $(field bytes_mean) bytes"
    printf '%-8s %9.1f %8.1f %8.1f %7d\n' "$c" "$rps" "$p50" "$p99" "$errors"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$rps" "$p50" "$p99" "$errors" "$non2xx" "$sock" >>"$results"
done
[ -z "$details" ] || printf 'errors:\n%s' "$details"
echo "(wrk cycled through ${loaded:-no photos})"
echo

# Peak RSS, then a clean stop.
hwm_kb="$(awk '/^VmHWM:/ {print $2}' "/proc/$server_pid/status" 2>/dev/null || echo 0)"
awk -v kb="${hwm_kb:-0}" 'BEGIN { printf "server peak RSS (VmHWM): %.1f MiB\n", kb / 1024 }'
rc=0
stop_server "$log" || rc=$?
[ "$remove_out" = 1 ] || echo "wrote $results, $log and wrk-*.txt under $out"
[ "$rc" = 0 ] && [ "$total_errors" = 0 ]
