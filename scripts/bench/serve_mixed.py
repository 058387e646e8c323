#!/usr/bin/env python3
"""Mixed good and bad traffic against a running `classify serve`, checked answer by answer.

    python3 scripts/bench/serve_mixed.py --url http://127.0.0.1:PORT --photos DIR \
        --expected predictions.csv [--requests 10000] [--clients 8] [--bad-every 10] \
        [--pid SERVER_PID] [--max-body 20MiB] [--large-every 7] [--max-photos 256] [--strict]
        [--retry-stale]

Sends --requests POST /predict requests from --clients threads, each thread on its own
keep-alive connection (http.client). Every --bad-every-th request is a bad one, the kinds in
turn:
  empty              no body (Content-Type image/jpeg)                   expect 400 empty
  truncated          a real JPEG's first half                            expect 422 truncated
  text_as_jpeg       a text file sent as image/jpeg                      expect 415 not_an_image
  wrong_content_type a real photo sent as text/plain                     expect 415 wrong_content_type
  png_30000          a valid PNG header (IHDR, CRC) claiming 30000x30000 expect 413 too_many_pixels
  jpeg_30000         a real JPEG with its SOF patched to 30000x30000     expect 413 too_many_pixels
  body_too_large     max-body + 1 bytes (a photo, zero padded), on a     expect 413 body_too_large
                     connection of its own; every --large-every-th bad
                     request (default 7: as often as each other kind)
The others POST real photos from --photos (up to --max-photos, evenly spaced over the sorted
list) whose expected class is the `class` column of --expected, the CSV that
`classify predict --model M --out predictions.csv DIR` wrote over the same photos (rows with an
error are skipped; paths are matched as written, relative to the current folder, to the CSV's
folder or to --photos).

Connections: each client keeps its connection alive across requests (as wrk and browsers do)
and opens a new one when an answer says `Connection: close`; body_too_large goes on a
connection of its own. A request that finds its kept-alive connection closed by the server
(broken pipe / reset / closed without an answer), as happens when the server closes a
connection after an error answer without saying `Connection: close`, is a connection error
named after the answer before it; with --retry-stale it is retried once on a new connection
and only counted.

Checks: every good request answers 200 with the CSV's class (a flip between two classes whose
CSV probabilities are within --tie 1e-4 of each other counts as a tie and passes); every bad
one answers a 4xx (with --strict: the status expected above); no request ends in a connection
error; GET /healthz answers 200 at the end. With --pid, samples the server's RSS (VmRSS in
/proc/PID/status) every second.

Prints the run's rate and the good requests' latency, a table per bad kind (statuses and error
kinds seen, and the status expected), the RSS min/max/last, up to 20 failures, and a last line
`N passed, M failed` (one check per request, plus /healthz). Exits 1 on any failure, 2 on bad
arguments. Python 3 standard library only.
"""

import argparse
import csv
import http.client
import json
import os
import struct
import sys
import threading
import time
import urllib.parse
import zlib
from collections import Counter, defaultdict

PHOTO_EXTS = (".jpg", ".jpeg", ".png")

# kind: (expected status, expected error kind)
BAD_KINDS = {
    "empty": (400, "empty"),
    "truncated": (422, "truncated"),
    "text_as_jpeg": (415, "not_an_image"),
    "wrong_content_type": (415, "wrong_content_type"),
    "png_30000": (413, "too_many_pixels"),
    "jpeg_30000": (413, "too_many_pixels"),
    "body_too_large": (413, "body_too_large"),
}
CHEAP_KINDS = [k for k in BAD_KINDS if k != "body_too_large"]

TEXT = (
    "path,class,probability\n"
    "this is a text file, not an image: the server should answer 415\n"
) * 40


def parse_size(text):
    """Bytes, or with a unit (KiB, MiB, GiB; K, KB, M, MB, ... mean the same), as `serve`."""
    t = text.strip()
    i = len(t)
    for j, ch in enumerate(t):
        if not ch.isdigit():
            i = j
            break
    digits, unit = t[:i], t[i:].strip().lower()
    shifts = {"": 0, "b": 0, "k": 10, "kb": 10, "kib": 10, "m": 20, "mb": 20, "mib": 20,
              "g": 30, "gb": 30, "gib": 30}
    if not digits or unit not in shifts:
        raise argparse.ArgumentTypeError(f"`{text}` is not a size (such as 20MiB or 1048576)")
    return int(digits) << shifts[unit]


def png_claiming(width, height):
    """A minimal valid PNG: signature, IHDR (8-bit RGB) with a correct CRC, a tiny IDAT, IEND."""

    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def jpeg_claiming(jpeg, width, height):
    """`jpeg` with its frame header (SOF0..SOF15) patched to `width` x `height`; None if no SOF."""
    data = bytearray(jpeg)
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:  # no length
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            # FF Cn, length (2), precision (1), height (2), width (2)
            struct.pack_into(">HH", data, i + 5, height, width)
            return bytes(data)
        if marker == 0xDA:  # start of scan: no frame header before it
            return None
        i += 2 + length
    return None


def content_type(path):
    return "image/png" if path.lower().endswith(".png") else "image/jpeg"


def read_expected(csv_path, photos_dir):
    """{realpath: (class, {class: probability})} for the CSV's rows without an error."""
    base = os.path.dirname(os.path.abspath(csv_path))
    out = {}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "path" not in reader.fieldnames or "class" not in reader.fieldnames:
            raise SystemExit(f"error: {csv_path}: not a `classify predict --out` CSV "
                             f"(columns: {reader.fieldnames})")
        for row in reader:
            if (row.get("error") or "").strip() or not row["class"]:
                continue
            p = row["path"]
            for cand in (p, os.path.join(base, p), os.path.join(photos_dir, p),
                         os.path.join(photos_dir, os.path.basename(p))):
                if os.path.isfile(cand):
                    probs = {k[2:]: float(v) for k, v in row.items()
                             if k and k.startswith("p_") and v not in (None, "")}
                    out[os.path.realpath(cand)] = (row["class"], probs)
                    break
    return out


class RssSampler(threading.Thread):
    """VmRSS of `pid` every second, in KiB."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples = []
        self.stop = threading.Event()

    def sample(self):
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        self.samples.append(int(line.split()[1]))
                        return
        except OSError:
            pass

    def run(self):
        while True:
            self.sample()
            if self.stop.wait(1.0):
                break


class StaleConnection(Exception):
    """A request on a kept-alive connection that the server had closed after its last answer
    (without `Connection: close`): the request got no answer."""

    def __init__(self, cause, after):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.after = after


class Client:
    """One thread's keep-alive connection (http.client)."""

    def __init__(self, host, port, timeout):
        self.host, self.port, self.timeout = host, port, timeout
        self.conn = None
        self.served = 0  # answers on self.conn
        self.last = None  # what the last of them answered

    def new(self):
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def post(self, body, ctype, label, fresh=False):
        """(status, body bytes) of POST /predict; raises on a connection error, as
        StaleConnection when a kept-alive connection was found closed. `fresh`: on a
        connection of its own, closed after."""
        if fresh:
            conn = self.new()
        else:
            if self.conn is None:
                self.conn, self.served = self.new(), 0
            conn = self.conn
        reused = not fresh and self.served > 0
        headers = {"Content-Type": ctype} if ctype else {}
        try:
            try:
                conn.request("POST", "/predict", body=body, headers=headers)
            except (BrokenPipeError, ConnectionResetError):
                # A server may answer (413) and close before the whole body is sent: the
                # answer can still be read.
                if not fresh:
                    raise
            resp = conn.getresponse()
            data = resp.read()
        except Exception as e:
            conn.close()
            if not fresh:
                self.conn = None
            if reused and isinstance(e, (BrokenPipeError, ConnectionResetError)):
                raise StaleConnection(e, self.last) from e
            raise
        if fresh or resp.will_close:
            conn.close()
            if not fresh:
                self.conn = None
        else:
            self.served += 1
            self.last = f"{label} {resp.status}"
        return resp.status, data


def percentile(values, q):
    if not values:
        return float("nan")
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(q / 100 * (len(s) - 1)))))
    return s[k]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:8080")
    p.add_argument("--photos", required=True, help="the photo folder predict ran over")
    p.add_argument("--expected", required=True, help="classify predict --out CSV")
    p.add_argument("--requests", type=int, default=10000)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--bad-every", type=int, default=10, help="every Nth request is bad (0: none)")
    p.add_argument("--large-every", type=int, default=7,
                   help="every Nth bad request is body_too_large (0: never)")
    p.add_argument("--max-body", type=parse_size, default=20 << 20,
                   help="the server's --max-body (default 20MiB)")
    p.add_argument("--max-photos", type=int, default=256, help="good photos to load")
    p.add_argument("--pid", type=int, help="the server's PID, to sample its RSS")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    p.add_argument("--tie", type=float, default=1e-4,
                   help="a class flip between probabilities this close passes")
    p.add_argument("--strict", action="store_true",
                   help="bad requests must answer exactly the status expected, not any 4xx")
    p.add_argument("--retry-stale", action="store_true",
                   help="retry once, on a new connection, a request that found its kept-alive "
                        "connection closed by the server (counted, not failed)")
    a = p.parse_args()
    if a.requests < 1 or a.clients < 1 or a.bad_every < 0 or a.large_every < 0:
        p.error("--requests and --clients must be positive, --bad-every and --large-every >= 0")

    url = urllib.parse.urlsplit(a.url)
    if url.scheme != "http" or not url.hostname:
        p.error(f"--url must be http://HOST:PORT, got {a.url}")
    host, port = url.hostname, url.port or 80

    photos_dir = os.path.realpath(a.photos)
    expected = read_expected(a.expected, photos_dir)
    paths = sorted(x for x in expected
                   if x.startswith(photos_dir + os.sep) and x.lower().endswith(PHOTO_EXTS))
    if not paths:
        raise SystemExit(f"error: no photo of {a.photos} has a row without error in {a.expected}")
    if len(paths) > a.max_photos:
        paths = [paths[i * len(paths) // a.max_photos] for i in range(a.max_photos)]
    goods = []
    for path in paths:
        with open(path, "rb") as f:
            goods.append((path, f.read()))
    classes = Counter(expected[path][0] for path, _ in goods)

    jpeg = next((b for path, b in goods if content_type(path) == "image/jpeg"
                 and jpeg_claiming(b, 1, 1)), None)
    if jpeg is None:
        raise SystemExit("error: the truncated and jpeg_30000 kinds need a baseline JPEG among the photos")
    bad_bodies = {
        "empty": (b"", "image/jpeg"),
        "truncated": (jpeg[: len(jpeg) // 2], "image/jpeg"),
        "text_as_jpeg": (TEXT.encode(), "image/jpeg"),
        "wrong_content_type": (jpeg, "text/plain"),
        "png_30000": (png_claiming(30000, 30000), "image/png"),
        "jpeg_30000": (jpeg_claiming(jpeg, 30000, 30000), "image/jpeg"),
        "body_too_large": (jpeg + b"\x00" * (a.max_body + 1 - len(jpeg)), "image/jpeg"),
    }

    # The plan: which request is what, fixed before the run.
    plan = []
    b = 0
    for i in range(a.requests):
        if a.bad_every and (i + 1) % a.bad_every == 0:
            if a.large_every and (b + 1) % a.large_every == 0:
                kind = "body_too_large"
            else:
                large_before = (b + 1) // a.large_every if a.large_every else 0
                kind = CHEAP_KINDS[(b - large_before) % len(CHEAP_KINDS)]
            plan.append(("bad", kind))
            b += 1
        else:
            plan.append(("good", (i - b) % len(goods)))

    sampler = None
    if a.pid:
        if not os.path.exists(f"/proc/{a.pid}/status"):
            raise SystemExit(f"error: no process {a.pid}")
        sampler = RssSampler(a.pid)
        sampler.start()

    n_good = sum(1 for t, _ in plan if t == "good")
    print(f"serve_mixed: {a.requests} requests ({n_good} good, {a.requests - n_good} bad) from "
          f"{a.clients} clients to {a.url}; {len(goods)} photos "
          f"({', '.join(f'{c} {n}' for c, n in sorted(classes.items()))}), max body {a.max_body} bytes",
          flush=True)

    lock = threading.Lock()
    cursor = [0]
    results = [None] * len(plan)

    stale = Counter()  # what kept-alive connections the server closed had last answered

    def worker():
        client = Client(host, port, a.timeout)
        while True:
            with lock:
                i = cursor[0]
                if i >= len(plan):
                    break
                cursor[0] += 1
            what, arg = plan[i]
            if what == "good":
                path, body = goods[arg]
                ctype, fresh, label = content_type(path), False, "good"
            else:
                body, ctype = bad_bodies[arg]
                fresh, label = arg == "body_too_large", arg
            t = time.perf_counter()
            err = None
            for attempt in (1, 2):
                try:
                    status, data = client.post(body, ctype, label, fresh=fresh)
                    err = None
                    break
                except StaleConnection as e:
                    status, data = None, b""
                    err = (f"{e} (on a kept-alive connection the server had closed after its "
                           f"answer to {e.after}, without Connection: close)")
                    with lock:
                        stale[e.after] += 1
                    if not a.retry_stale:
                        break
                except Exception as e:  # a connection error: no answer
                    status, data, err = None, b"", f"{type(e).__name__}: {e}"
                    break
            results[i] = (status, data, err, time.perf_counter() - t)
        if client.conn is not None:
            client.conn.close()

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(a.clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - start

    failures = []
    passed = failed = 0
    good_latency = []
    good_stats = Counter()
    bad_status = defaultdict(Counter)
    bad_kind = defaultdict(Counter)
    connection_errors = Counter()
    for i, ((what, arg), (status, data, err, secs)) in enumerate(zip(plan, results)):
        label = goods[arg][0] if what == "good" else arg
        if err is not None:
            connection_errors[err.split(":")[0]] += 1
            if what == "bad":
                bad_status[arg]["conn-error"] += 1
            else:
                good_stats["connection error"] += 1
            failures.append(f"request {i} ({label}): connection error: {err}")
            failed += 1
            continue
        try:
            answer = json.loads(data) if data else {}
        except ValueError:
            answer = {}
        if what == "good":
            want, probs = expected[goods[arg][0]]
            got = answer.get("class") if isinstance(answer, dict) else None
            if status != 200:
                good_stats[f"status {status}"] += 1
                failures.append(f"request {i} ({label}): status {status}: {data[:200]!r}")
                failed += 1
            elif got == want:
                good_stats["ok"] += 1
                good_latency.append(secs)
                passed += 1
            elif got in probs and want in probs and abs(probs[got] - probs[want]) <= a.tie:
                good_stats["ok (tie)"] += 1
                good_latency.append(secs)
                passed += 1
            else:
                good_stats["wrong class"] += 1
                failures.append(f"request {i} ({label}): class {got!r}, expected {want!r} "
                                f"(answer {data[:200]!r})")
                failed += 1
        else:
            want_status, want_kind = BAD_KINDS[arg]
            bad_status[arg][status] += 1
            kind = answer.get("kind") if isinstance(answer, dict) else None
            bad_kind[arg][kind or "-"] += 1
            ok = status == want_status if a.strict else 400 <= status < 500
            if ok:
                passed += 1
            else:
                failed += 1
                failures.append(f"request {i} ({arg}): status {status}, expected "
                                f"{want_status if a.strict else '4xx'} ({want_kind}): {data[:200]!r}")

    # The server is still up.
    try:
        conn = http.client.HTTPConnection(host, port, timeout=10)
        conn.request("GET", "/healthz")
        health = conn.getresponse().status
        conn.close()
    except Exception as e:  # noqa: BLE001
        health = f"{type(e).__name__}: {e}"
    if health == 200:
        passed += 1
    else:
        failed += 1
        failures.append(f"GET /healthz at the end: {health}")

    if sampler:
        sampler.stop.set()
        sampler.join()
        sampler.sample()

    print(f"done in {wall:.1f} s: {a.requests / wall:.1f} requests/s")
    lat_ms = [s * 1e3 for s in good_latency]
    print(f"good: {n_good} sent, " + ", ".join(f"{k} {v}" for k, v in sorted(good_stats.items()))
          + (f"; latency p50 {percentile(lat_ms, 50):.1f} ms, p99 {percentile(lat_ms, 99):.1f} ms"
             if lat_ms else ""))
    if bad_status:
        print(f"{'bad kind':<20} {'sent':>5}  {'statuses':<18} {'error kinds':<28} expected")
        for kind in BAD_KINDS:
            if kind not in bad_status:
                continue
            sent = sum(bad_status[kind].values())
            st = " ".join(f"{s}:{n}" for s, n in sorted(bad_status[kind].items(), key=str))
            kd = " ".join(f"{k}:{n}" for k, n in sorted(bad_kind[kind].items()))
            ws, wk = BAD_KINDS[kind]
            mark = "ok" if set(bad_status[kind]) == {ws} and set(bad_kind[kind]) == {wk} else "DIFFERENT"
            print(f"{kind:<20} {sent:>5}  {st:<18} {kd:<28} {ws} {wk} ({mark})")
    print(f"connection errors: {sum(connection_errors.values())}"
          + (" (" + ", ".join(f"{k} {v}" for k, v in connection_errors.items()) + ")"
             if connection_errors else ""))
    if stale:
        what = "retried on a new connection" if a.retry_stale else "each a failure"
        print(f"kept-alive connections found closed by the server ({what}): "
              f"{sum(stale.values())}, after its answer to: "
              + ", ".join(f"{k} x{v}" for k, v in sorted(stale.items()))
              + " (the server closed them without Connection: close)")
    print(f"healthz at the end: {health}")
    if sampler:
        if sampler.samples:
            s = sampler.samples
            print(f"server RSS (VmRSS, {len(s)} samples, 1 s apart): min {min(s) / 1024:.1f} MiB, "
                  f"max {max(s) / 1024:.1f} MiB, last {s[-1] / 1024:.1f} MiB")
        else:
            print(f"server RSS: no sample (process {a.pid} gone?)")
    if failures:
        print(f"failures ({len(failures)}; the first 20):")
        for line in failures[:20]:
            print(f"  {line}")
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
