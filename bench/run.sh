#!/usr/bin/env bash
# Every benchmark in one run, lettash beside what a user would otherwise use (the official
# TypeScript client @letta-ai/letta-client 1.12.1, bare libcurl, lua5.4), then ONE table of
# medians (min-max), ratios and the goals of issue #9, also written to bench/RESULTS.md.
#   bench/run.sh          (about 8 minutes on 2 cores)
#   QUICK=1 bench/run.sh  (smaller counts, 3 rounds: a check that everything runs, not results)
# Parts, each a script that also runs alone and leaves its raw figures in build/bench/:
#   bench/startup.sh   start-up: bin/lettash -e '' vs lua5.4 -e '' vs node loading the client
#   bench/requests.sh  20,000 GET /v1/health/ on loopback nginx, sequential and 64 in flight
#   bench/import.sh    bulk passage import, emulator at 20 ms latency and 150 ms per embedding
#                      request (8 at once): lettash per passage and batched, the official client's
#                      createMany; then (--latency) one passage a request without embedding cost
#   bench/store.sh     store lookups from Lua; onboarding 1,000 users against the emulator
#   bench/stream.sh    a streamed reply of 10,000 token deltas from the emulator
# Each part starts its own servers (nginx, emulator) on loopback and stops them on exit; this
# script stops the running part if it is interrupted. Logs: build/bench/run.log.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [ "${QUICK:-0}" = 1 ]; then
  START_ROUNDS=11 ROUNDS=3 REQ_N=2000 IMPORT_N=2000 IMPORT_N1=200 IMPORT_ROUNDS=2 LAT_N=400 OB_N=200 OB_ROUNDS=1 WORDS=2000
else
  START_ROUNDS=51 ROUNDS=7 REQ_N=20000 IMPORT_N=10000 IMPORT_N1=1000 IMPORT_ROUNDS=3 LAT_N=2000 OB_N=1000 OB_ROUNDS=5 WORDS=10000
fi

. bench/lib.sh
bench_build rusage curl_loop spawn_time
bench_node
# One binary for the whole run, even if the tree is rebuilt meanwhile (LETTASH=path picks another).
if [ "$LETTASH" = bin/lettash ]; then
  cp bin/lettash build/bench/lettash
  LETTASH=build/bench/lettash
fi
export LETTASH
BUILD="$("$LETTASH" -v 2>&1 | head -1), tree $(git rev-parse --short HEAD 2>/dev/null || echo ?)$(git diff --quiet HEAD -- src lua 2>/dev/null || echo ' with uncommitted changes in src/ or lua/')"
rm -f build/bench/{startup,requests,import,import_latency,import_batch_sizes,store,onboard,stream}.txt
LOG=build/bench/run.log
: >"$LOG"

CHILD=
stop_child() {
  if [ -n "$CHILD" ]; then
    kill -TERM "$CHILD" 2>/dev/null || true # the part's own trap stops its servers
    wait "$CHILD" 2>/dev/null || true
    CHILD=
  fi
}
trap stop_child EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

part() { # part LABEL cmd... : runs one part in the background (so that a signal here reaches it)
  local label=$1 t0=$SECONDS rc=0
  shift
  printf '%-42s' "$label..." >&2
  echo "=== $label: $*" >>"$LOG"
  "$@" >>"$LOG" 2>&1 &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=
  if [ "$rc" -ne 0 ]; then
    echo " failed (exit $rc); see $LOG" >&2
    tail -20 "$LOG" >&2
    exit 1
  fi
  echo " $((SECONDS - t0)) s" >&2
}

LOAD=$(cut -d' ' -f1-3 /proc/loadavg)
T0=$SECONDS
part "start-up ($START_ROUNDS rounds)" bench/startup.sh "$START_ROUNDS"
part "requests ($REQ_N x 6 programs, $ROUNDS rounds)" env ROUNDS="$ROUNDS" INFLIGHT=64 bench/requests.sh "$REQ_N"
part "import ($IMPORT_N passages, $IMPORT_ROUNDS rounds)" env ROUNDS="$IMPORT_ROUNDS" N1="$IMPORT_N1" bench/import.sh "$IMPORT_N"
part "import per passage ($LAT_N, $IMPORT_ROUNDS rounds)" env ROUNDS="$IMPORT_ROUNDS" bench/import.sh --latency "$LAT_N"
part "store and onboarding ($OB_N users, $OB_ROUNDS rounds)" env ROUNDS="$ROUNDS" OB_ROUNDS="$OB_ROUNDS" bench/store.sh "$OB_N"
part "streaming ($WORDS deltas, $ROUNDS rounds)" env ROUNDS="$ROUNDS" bench/stream.sh "$WORDS"
echo "all parts: $((SECONDS - T0)) s" >&2
echo >&2

OUT=bench/RESULTS.md
[ "${QUICK:-0}" = 1 ] && OUT=build/bench/RESULTS.quick.md
BENCH_LOAD=$LOAD BENCH_BUILD=$BUILD BENCH_ROUNDS_NOTE="Runs: start-up $START_ROUNDS rounds; requests, store lookups and streaming $ROUNDS rounds; \
bulk import $IMPORT_ROUNDS rounds (lettash per passage: the first $IMPORT_N1 of the $IMPORT_N passages, its rate is what counts); onboarding $OB_ROUNDS rounds of $OB_N users. \
Whole run: $((SECONDS - T0)) s. Raw figures: build/bench/*.txt." \
  python3 bench/report.py --md "$OUT" --notes bench/NOTES.md
echo >&2
echo "written: $OUT" >&2
