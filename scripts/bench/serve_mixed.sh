#!/usr/bin/env bash
# Mixed good and bad traffic against `classify serve`, every answer checked against
# `classify predict` on the same photos (scripts/bench/serve_mixed.py does the checking).
#
#   scripts/bench/serve_mixed.sh MODEL_DIR PHOTOS_DIR
#
# Builds nothing. Copies PHOTO_LIMIT photos of PHOTOS_DIR (evenly spaced over the sorted list,
# their sub-folders kept) into a temporary folder, runs
# `classify predict --model MODEL_DIR --out $tmp/expected.csv` over it, starts
# `classify serve --model MODEL_DIR` on a free loopback port (127.0.0.1:0; the port read from
# its `listening on http://ADDR` line), waits for /healthz, runs serve_mixed.py with the
# server's PID (for its RSS), then stops the server with SIGTERM and checks that it exited 0.
#
# MODEL_DIR: a model artifact folder (artifacts/top, ...) or its model.safetensors.
# PHOTOS_DIR: JPEG/PNG photos, searched recursively.
#
# Environment:
#   BIN_DIR      where `classify` is (default target/release; build it with
#                `cargo build --release -p classify`)
#   THREADS      the server's and predict's compute threads: RAYON_NUM_THREADS (default 2)
#   PHOTO_LIMIT  photos to copy and use (default 256; 0: all of PHOTOS_DIR)
#   REQUESTS     requests to send (default 10000)
#   CLIENTS      concurrent clients (default 8)
#   BAD_EVERY    every Nth request is a bad one (default 10)
#   LARGE_EVERY  every Nth bad request is max-body + 1 bytes (default 7)
#   MAX_BODY     the server's --max-body, told to serve_mixed.py too (default 20MiB)
#   STRICT=1     bad requests must answer exactly the documented status, not any 4xx
#   RETRY_STALE=1  retry once, on a new connection, a request whose kept-alive connection the
#                server had closed (counted, not failed; see serve_mixed.py)
#   SERVE_ARGS   extra `classify serve` arguments
#   PYTHON       the Python 3 to run serve_mixed.py (default python3)
#
# Prints predict's summary, serve_mixed.py's report (rate, latency, the table of bad kinds,
# connection errors, /healthz, the server's RSS min/max/last, `N passed, M failed`) and whether
# the server exited 0 on SIGTERM. Exits non-zero when a check failed or the server did not
# exit 0.
set -euo pipefail
cd "$(dirname "$0")/../.."

usage="usage: scripts/bench/serve_mixed.sh MODEL_DIR PHOTOS_DIR"
model="${1:?$usage}"
photos="${2:?$usage}"
bin="${BIN_DIR:-target/release}/classify"
threads="${THREADS:-2}"
limit="${PHOTO_LIMIT:-256}"
max_body="${MAX_BODY:-20MiB}"
python="${PYTHON:-python3}"

[ -x "$bin" ] || { echo "error: $bin not found; run cargo build --release -p classify (or set BIN_DIR)" >&2; exit 1; }
[ -e "$model" ] || { echo "error: model $model not found" >&2; exit 1; }
[ -d "$photos" ] || { echo "error: photo folder $photos not found" >&2; exit 1; }
photos="$(cd "$photos" && pwd)"

tmp="$(mktemp -d)"
# shellcheck source=scripts/bench/serve_lib.sh
source scripts/bench/serve_lib.sh
cleanup() {
    kill_server
    rm -rf "$tmp"
}
trap cleanup EXIT

# The photos: a sample, so that predict stays quick on a big folder.
mkdir -p "$tmp/photos"
(cd "$photos" && find . -type f \( -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.png' \) \
    | LC_ALL=C sort) >"$tmp/all.txt"
total=$(wc -l <"$tmp/all.txt")
[ "$total" -gt 0 ] || { echo "error: no JPEG or PNG under $photos" >&2; exit 1; }
if [ "$limit" -gt 0 ] && [ "$total" -gt "$limit" ]; then
    awk -v n="$total" -v k="$limit" 'BEGIN { for (i = 0; i < k; i++) want[int(i * n / k) + 1] = 1 }
        want[NR]' "$tmp/all.txt" >"$tmp/list.txt"
else
    cp "$tmp/all.txt" "$tmp/list.txt"
fi
(cd "$photos" && while IFS= read -r f; do
    mkdir -p "$tmp/photos/$(dirname "$f")" && cp "$f" "$tmp/photos/$f"
done) <"$tmp/list.txt"
echo "photos: $(wc -l <"$tmp/list.txt") of $total under $photos"

# What the model says about them, as the reference.
set +e
RAYON_NUM_THREADS="$threads" "$bin" predict --model "$model" --out "$tmp/expected.csv" \
    "$tmp/photos" >"$tmp/predict.log" 2>&1
rc=$?
set -e
if [ ! -s "$tmp/expected.csv" ]; then
    echo "error: classify predict (exit $rc) wrote no CSV:" >&2; cat "$tmp/predict.log" >&2; exit 1
fi
[ "$rc" = 0 ] || echo "warning: classify predict exited $rc (some photos unreadable; their rows are skipped)"
echo "predict: $(($(wc -l <"$tmp/expected.csv") - 1)) rows in expected.csv; $(grep -v '^[^ ]*: ' "$tmp/predict.log" | tail -n 1)"

# The server.
# shellcheck disable=SC2206 # SERVE_ARGS is a list of words
server_cmd=("$bin" serve --model "$model" --addr 127.0.0.1:0 --max-body "$max_body" ${SERVE_ARGS:-})
start_server "$tmp/server.log" "$threads" "${server_cmd[@]}"
echo "server: pid $server_pid at $url (max body $max_body, RAYON_NUM_THREADS=$threads)"

strict=()
[ "${STRICT:-0}" = 1 ] && strict=(--strict)
[ "${RETRY_STALE:-0}" = 1 ] && strict+=(--retry-stale)
set +e
"$python" scripts/bench/serve_mixed.py --url "$url" --photos "$tmp/photos" \
    --expected "$tmp/expected.csv" --requests "${REQUESTS:-10000}" --clients "${CLIENTS:-8}" \
    --bad-every "${BAD_EVERY:-10}" --large-every "${LARGE_EVERY:-7}" --max-body "$max_body" \
    --max-photos "$(( limit > 0 ? limit : 1000000 ))" --pid "$server_pid" "${strict[@]}"
checks=$?
set -e
rc=0
stop_server "$tmp/server.log" || rc=$?
[ "$checks" = 0 ] && [ "$rc" = 0 ]
