#!/bin/sh
# Load test of the Letta emulator: GET /v1/health/ with 16 keep-alive connections on loopback.
# Prints the requests/s and whether the 2000 req/s goal of issue #3 is met.
# Usage: bench/emulator.sh [seconds]   (uses wrk if present, else a small Python load generator;
#        BENCH_LOADGEN=python forces the Python one)
set -eu

DURATION="${1:-5}"
GOAL=2000
CONNS=16
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
TMP="$(mktemp -d)"
EMU_PID=""

cleanup() {
    if [ -n "$EMU_PID" ]; then
        kill "$EMU_PID" 2>/dev/null || true
        wait "$EMU_PID" 2>/dev/null || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

"$PY" "$ROOT/tests/emulator/letta_emulator.py" --port 0 >"$TMP/out" 2>"$TMP/err" &
EMU_PID=$!
i=0
while ! grep -q '^LETTA_EMULATOR_URL=' "$TMP/out" 2>/dev/null; do
    i=$((i + 1))
    if [ "$i" -gt 100 ] || ! kill -0 "$EMU_PID" 2>/dev/null; then
        echo "emulator did not start:" >&2
        cat "$TMP/err" >&2
        exit 1
    fi
    sleep 0.1
done
URL="$(sed -n 's/^LETTA_EMULATOR_URL=//p' "$TMP/out")"
TARGET="$URL/v1/health/"

LOADGEN="${BENCH_LOADGEN:-wrk}"
if [ "$LOADGEN" = wrk ] && ! command -v wrk >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get install -y wrk >/dev/null 2>&1 || true
fi

if [ "$LOADGEN" = wrk ] && command -v wrk >/dev/null 2>&1; then
    echo "load: wrk -t1 -c$CONNS -d${DURATION}s $TARGET"
    wrk -t1 -c"$CONNS" -d"${DURATION}s" "$TARGET" | tee "$TMP/wrk"
    RPS="$(awk '/^Requests\/sec:/ {print $2}' "$TMP/wrk")"
else
    echo "load: python load generator, $CONNS keep-alive connections, ${DURATION}s, $TARGET"
    RPS="$("$PY" - "$TARGET" "$CONNS" "$DURATION" <<'PYEOF'
# Fallback load generator: one process per connection (threads would share the GIL and measure
# the client, not the server), each looping over one keep-alive http.client connection.
import http.client, multiprocessing, sys, time, urllib.parse

def worker(args):
    host, port, path, seconds = args
    conn = http.client.HTTPConnection(host, port)
    n, end = 0, time.time() + seconds
    while time.time() < end:
        conn.request("GET", path)
        r = conn.getresponse(); r.read()
        n += r.status == 200
    return n

url = urllib.parse.urlsplit(sys.argv[1])
conns, seconds = int(sys.argv[2]), float(sys.argv[3])
with multiprocessing.Pool(conns) as pool:
    t0 = time.time()
    total = sum(pool.map(worker, [(url.hostname, url.port, url.path, seconds)] * conns))
    print("%.0f" % (total / (time.time() - t0)))
PYEOF
)"
fi

echo "emulator GET /v1/health/ with $CONNS keep-alive connections: $RPS requests/s"
if awk -v r="$RPS" -v g="$GOAL" 'BEGIN { exit !(r + 0 >= g) }'; then
    echo "goal >= $GOAL req/s: MET"
else
    echo "goal >= $GOAL req/s: NOT MET"
    exit 1
fi
