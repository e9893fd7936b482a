#!/usr/bin/env bash
# The local store from Lua: lookups/s of user records (bench/store.lua: LOOKUPS store:user(name)
# over RECORDS records, and the C binding's raw get in one read transaction), ROUNDS runs on a
# fresh store after a warm-up; then onboarding N users end to end against the emulator (no added
# latency) with bench/onboard.lua in one process, 16 at a time with letta.spawn, OB_ROUNDS runs
# each on a fresh emulator and store. Each onboarding run with durable commits (the default) is
# followed by one with store:durable(false), to show what the disk's flushes cost.
#   bench/store.sh [N]     (default 1000; RECORDS=1000, LOOKUPS=100000, ROUNDS=5, OB_ROUNDS=3)
# Raw figures: build/bench/store.txt and build/bench/onboard.txt, one run a line.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${1:-1000}
RECORDS=${RECORDS:-1000}
LOOKUPS=${LOOKUPS:-100000}
ROUNDS=${ROUNDS:-5}
OB_ROUNDS=${OB_ROUNDS:-3}
K=16
LIMIT=300 # seconds any one run may take

. bench/lib.sh
bench_build rusage
WORK=$(mktemp -d "${TMPDIR:-/tmp}/lettash-store-bench.XXXXXX")
stop_all() { emu_stop; rm -rf "$WORK"; }
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

lookups() { # -> "user_lookups_per_s raw_gets_per_s"
  rm -f "$WORK/lookups" "$WORK/lookups-lock"
  "$LETTASH" bench/store.lua "$WORK/lookups" "$RECORDS" "$1" |
    python3 -c 'import json,sys; d=json.load(sys.stdin); print("%.0f %.0f" % (d["user"], d["raw"]))'
}
{
  echo "# bench/store.sh: records=$RECORDS lookups=$LOOKUPS rounds=$ROUNDS $(date -u +%FT%TZ)"
  echo "# round user_lookups_per_s raw_gets_per_s"
} >"$WORK/store.txt"
lookups $((LOOKUPS / 10)) >/dev/null # warm-up
for r in $(seq "$ROUNDS"); do echo "$r $(lookups "$LOOKUPS")" >>"$WORK/store.txt"; done
cp "$WORK/store.txt" build/bench/store.txt

emu_start "$WORK" 0
onboard() { # onboard NAME USERS -> "NAME user_s sys_s wall_s peak_rss_kb users users_per_s"
  local name=$1 n=$2 cost sync=
  [ "$name" = onboard_nosync ] && sync=nosync
  emu_admin /_emulator/reset '{}' >/dev/null
  rm -f "$WORK/store" "$WORK/store-lock"
  cost=$(LETTA_BASE_URL=$EMU_URL build/bench/rusage -t "$LIMIT" sh -c 'exec "$@" >"$0"' "$WORK/out" \
           "$LETTASH" bench/onboard.lua "$WORK/store" "$n" "$K" $sync) || { echo "store.sh: $name failed" >&2; exit 1; }
  echo "$name $cost $(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%d %.1f" % (d["users"], d["rate"]))' "$WORK/out")"
}
{
  echo "# bench/store.sh: onboarding N=$N concurrency=$K rounds=$OB_ROUNDS url=$EMU_URL $(date -u +%FT%TZ)"
  echo "# round name user_s sys_s wall_s peak_rss_kb users users_per_s"
} >"$WORK/onboard.txt"
for name in onboard onboard_nosync; do onboard "$name" $((N / 10)) >/dev/null; done # warm-up
for r in $(seq "$OB_ROUNDS"); do
  for name in onboard onboard_nosync; do line=$(onboard "$name" "$N") && echo "$r $line" >>"$WORK/onboard.txt"; done
done
cp "$WORK/onboard.txt" build/bench/onboard.txt
python3 bench/report.py --only store
