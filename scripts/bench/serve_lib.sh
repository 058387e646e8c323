# shellcheck shell=bash
# Sourced by scripts/bench/serve_load.sh and serve_mixed.sh: starting `classify serve` on a
# free loopback port, waiting until it answers, and stopping it the way a user would.
#
#   start_server LOG THREADS CMD...   runs CMD (a `classify serve ... --addr 127.0.0.1:0`
#                                     command, possibly behind taskset) with RAYON_NUM_THREADS=
#                                     THREADS and its output in LOG; waits (60 s) for its
#                                     `listening on http://ADDR` line, then (10 s) for GET
#                                     /healthz to answer 200. Sets server_pid and url.
#   stop_server LOG                   SIGTERM, wait, and say how it exited (the end of LOG when
#                                     not 0); returns its exit status.
#   kill_server                       the same stop without a word, for EXIT traps.

server_pid=""
url=""

start_server() {
    local log=$1 threads=$2 addr="" _
    shift 2
    # A simple command, so that $! is the server itself (taskset execs it): the PID to signal
    # and to read /proc/PID/status from.
    RAYON_NUM_THREADS="$threads" "$@" >"$log" 2>&1 &
    server_pid=$!
    for _ in $(seq 1 600); do # loading a backbone's weights takes a while
        addr="$(sed -n 's|^listening on http://||p' "$log" | head -n1)"
        [ -n "$addr" ] && break
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "error: the server exited before listening:" >&2; cat "$log" >&2; return 1
        fi
        sleep 0.1
    done
    [ -n "$addr" ] || { echo "error: the server did not say where it listens within 60 s:" >&2; cat "$log" >&2; return 1; }
    url="http://$addr"
    for _ in $(seq 1 100); do
        if python3 -c "import sys,urllib.request; sys.exit(urllib.request.urlopen('$url/healthz', timeout=2).status != 200)" 2>/dev/null; then
            return 0
        fi
        sleep 0.1
    done
    echo "error: $url/healthz did not answer 200" >&2; cat "$log" >&2; return 1
}

stop_server() {
    local log=$1 rc
    kill -TERM "$server_pid"
    set +e
    wait "$server_pid"
    rc=$?
    set -e
    server_pid=""
    if [ "$rc" = 0 ]; then
        echo "server: exited 0 on SIGTERM"
    else
        echo "error: the server exited $rc on SIGTERM; the end of its log:" >&2
        tail -n 20 "$log" >&2
    fi
    return "$rc"
}

kill_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
}
