#!/usr/bin/env bash
# Our single-image latency: one photo, batch 1, call after call, p50/p90/p99, and (with
# TORCH_PYTHON) PyTorch's on the same photo, threads and head for comparison.
#
#   scripts/bench/predict_latency.sh MODEL_DIR PHOTO
#
# In process (the measurement to report): runs the `latency` example of the classify crate,
# `$BIN_DIR/examples/latency --model MODEL_DIR PHOTO --repeat REPEAT --warmup WARMUP`
# (build it with `cargo build --release -p classify --example latency`), which times
# Classifier::decode (decode + resize) + predict_prepared (preprocess + forward + head) on the
# photo's bytes, already in memory, and prints `p50 X ms  p90 Y ms  p99 Z ms  (...)`.
# Until that example exists (or with VIA_HTTP=1) it falls back to timing over HTTP: it starts
# `classify serve --max-batch 1 --batch-wait-ms 0` on a free loopback port and POSTs the photo
# from one client, one request at a time (the same work plus loopback HTTP, ~0.1-0.3 ms, and
# the server's decode/batch hand-offs); the output says which it measured.
#
# MODEL_DIR: a model artifact folder (artifacts/efficientnet/top, ...) or its model.safetensors.
# PHOTO: a JPEG or PNG.
#
# Environment:
#   BIN_DIR       where `classify` and examples/latency are (default target/release)
#   THREADS       compute threads: RAYON_NUM_THREADS, and torch's --threads (default 2)
#   REPEAT        timed calls (default 200); WARMUP: calls before them (default 20)
#   VIA_HTTP=1    time over HTTP even when the example exists
#   TORCH_PYTHON  a Python with torch, timm, safetensors, pillow, numpy: when set, also runs
#                 scripts/bench/lite0_latency_torch.py PHOTO --head HEAD (EfficientNet-Lite0;
#                 meaningful for Lite0 models only)
#   HEAD          top or finetune, for the torch run (default top)
#
# Prints what was measured and a `p50 X ms  p90 Y ms  p99 Z ms` line for ours, then the torch
# script's report and the ratio of the p50s when TORCH_PYTHON is set.
set -euo pipefail
cd "$(dirname "$0")/../.."

usage="usage: scripts/bench/predict_latency.sh MODEL_DIR PHOTO"
model="${1:?$usage}"
photo="${2:?$usage}"
bin_dir="${BIN_DIR:-target/release}"
threads="${THREADS:-2}"
repeat="${REPEAT:-200}"
warmup="${WARMUP:-20}"
[ -e "$model" ] || { echo "error: model $model not found" >&2; exit 1; }
[ -f "$photo" ] || { echo "error: photo $photo not found" >&2; exit 1; }

ours_out="$(mktemp)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -f "$ours_out" "${log:-}"
}
trap cleanup EXIT

example="$bin_dir/examples/latency"
if [ -x "$example" ] && [ "${VIA_HTTP:-0}" != 1 ]; then
    echo "ours: in process, $example (RAYON_NUM_THREADS=$threads)"
    RAYON_NUM_THREADS="$threads" "$example" --model "$model" "$photo" \
        --repeat "$repeat" --warmup "$warmup" | tee "$ours_out"
else
    bin="$bin_dir/classify"
    [ -x "$bin" ] || { echo "error: neither $example nor $bin found; cargo build --release -p classify" >&2; exit 1; }
    [ -x "$example" ] || echo "note: $example not found (cargo build --release -p classify --example latency): timing over HTTP instead"
    echo "ours: over HTTP, $bin serve --max-batch 1 --batch-wait-ms 0 (RAYON_NUM_THREADS=$threads), one client, one request at a time"
    log="$(mktemp)"
    RAYON_NUM_THREADS="$threads" "$bin" serve --model "$model" --addr 127.0.0.1:0 \
        --max-batch 1 --batch-wait-ms 0 >"$log" 2>&1 &
    server_pid=$!
    addr=""
    for _ in $(seq 1 600); do
        addr="$(sed -n 's|^listening on http://||p' "$log" | head -n1)"
        [ -n "$addr" ] && break
        kill -0 "$server_pid" 2>/dev/null || { echo "error: the server exited:" >&2; cat "$log" >&2; exit 1; }
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "error: the server did not start within 60 s" >&2; cat "$log" >&2; exit 1; }
    python3 - "$addr" "$photo" "$repeat" "$warmup" <<'EOF' | tee "$ours_out"
import http.client, json, sys, time
addr, photo, repeat, warmup = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
host, port = addr.rsplit(":", 1)
body = open(photo, "rb").read()
ctype = "image/png" if photo.lower().endswith(".png") else "image/jpeg"
conn = http.client.HTTPConnection(host, int(port), timeout=60)
for _ in range(100):
    try:
        conn.request("GET", "/healthz"); r = conn.getresponse(); r.read()
        if r.status == 200:
            break
    except OSError:
        conn.close(); time.sleep(0.1)
conn.request("GET", "/model"); r = conn.getresponse(); info = json.loads(r.read())
print(f"model: {info['name']}: architecture {info['architecture']}, backbone {info.get('backbone') or 'none'}, "
      f"input {info['input_size'][0]}x{info['input_size'][1]} {info['interpolation']}")
times, answer = [], None
for i in range(warmup + repeat):
    t = time.perf_counter()
    conn.request("POST", "/predict", body=body, headers={"Content-Type": ctype})
    r = conn.getresponse(); data = r.read()
    dt = (time.perf_counter() - t) * 1e3
    if r.status != 200:
        sys.exit(f"error: status {r.status}: {data[:200]!r}")
    answer = json.loads(data)
    if i >= warmup:
        times.append(dt)
times.sort()
pct = lambda q: times[min(len(times) - 1, int(round(q / 100 * (len(times) - 1))))]
print(f"photo: {photo} ({len(body)} bytes): {answer['class']} {answer['probability']:.4f}")
print(f"per request: {repeat} requests after {warmup} warm-up")
print(f"p50 {pct(50):.2f} ms  p90 {pct(90):.2f} ms  p99 {pct(99):.2f} ms  "
      f"(mean {sum(times) / len(times):.2f}, min {times[0]:.2f}, max {times[-1]:.2f})")
EOF
    kill -TERM "$server_pid"
    wait "$server_pid" || { echo "error: the server did not exit 0 on SIGTERM" >&2; exit 1; }
    server_pid=""
fi

if [ -n "${TORCH_PYTHON:-}" ]; then
    echo
    torch_out="$(OMP_NUM_THREADS="$threads" "$TORCH_PYTHON" scripts/bench/lite0_latency_torch.py "$photo" \
        --threads "$threads" --repeat "$repeat" --warmup "$warmup" --head "${HEAD:-top}")"
    echo "$torch_out"
    ours_p50="$(sed -nE 's/^p50 ([0-9.]+) ms.*/\1/p' "$ours_out" | tail -n1)"
    torch_p50="$(sed -nE 's/^p50 ([0-9.]+) ms.*/\1/p' <<<"$torch_out" | tail -n1)"
    grep -q efficientnet_lite0 "$ours_out" \
        || echo "note: ours did not report an efficientnet_lite0 model: the two timings are of different networks"
    if [ -n "$ours_p50" ] && [ -n "$torch_p50" ]; then
        awk -v o="$ours_p50" -v t="$torch_p50" \
            'BEGIN { printf "\np50: ours %.2f ms, pytorch %.2f ms: pytorch / ours = %.2fx\n", o, t, t / o }'
    fi
fi
