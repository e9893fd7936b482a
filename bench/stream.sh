#!/usr/bin/env bash
# Streaming: one reply of WORDS token deltas from the emulator (it answers `you said: <text>` word
# by word with stream_tokens), read by bin/lettash (bench/stream.lua) and by the official
# TypeScript client (bench/stream_ts.mjs), interleaved ROUNDS times after a warm-up, each run on a
# freshly reset emulator. Per run: time from the call to the first event, events/s from the first
# event to the last, and from wait4 the process's CPU seconds and peak RSS.
#   bench/stream.sh [WORDS]     (default 10000; ROUNDS=5, TS=1 from the environment)
# Raw figures, one run a line: build/bench/stream.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
WORDS=${1:-10000}
ROUNDS=${ROUNDS:-5}
TS=${TS:-1}
LIMIT=120 # seconds any one run may take

. bench/lib.sh
bench_build rusage
[ "$TS" = 0 ] || bench_node
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lettash-stream-bench.XXXXXX")
stop_all() { emu_stop; rm -rf "$WORK"; }
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
emu_start "$WORK" 0

ORDER=(lettash)
[ "$TS" = 0 ] || ORDER+=(ts)

run() { # run NAME WORDS -> "NAME user_s sys_s wall_s peak_rss_kb first_ms events seconds events_per_s"
  local name=$1 words=$2 agent cost cmd
  agent=$(emu_agent)
  case $name in
    lettash) cmd=("$LETTASH" bench/stream.lua "$EMU_URL" "$agent" "$words") ;;
    ts) cmd=(node bench/stream_ts.mjs "$EMU_URL" "$agent" "$words") ;;
  esac
  cost=$(build/bench/rusage -t "$LIMIT" sh -c 'exec "$@" >"$0"' "$WORK/out" "${cmd[@]}") ||
    { echo "stream.sh: $name failed" >&2; exit 1; }
  echo "$name $cost $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.3f %d %.4f %.1f" % (d["first_ms"], d["events"], d["seconds"], d["rate"]))' "$WORK/out")"
}

RAW=build/bench/stream.txt
{
  echo "# bench/stream.sh: words=$WORDS rounds=$ROUNDS url=$EMU_URL $(date -u +%FT%TZ)"
  echo "# round name user_s sys_s wall_s peak_rss_kb first_ms events seconds events_per_s"
} >"$WORK/raw"
for name in "${ORDER[@]}"; do run "$name" "$WORDS" >/dev/null; done # warm-up
for r in $(seq "$ROUNDS"); do
  for name in "${ORDER[@]}"; do line=$(run "$name" "$WORDS") && echo "$r $line" >>"$WORK/raw"; done
done
cp "$WORK/raw" "$RAW"
python3 bench/report.py --only stream
