#!/usr/bin/env bash
# Start-up time of `bin/lettash -e ''` beside `lua5.4 -e ''` and node loading the official client
# (`node -e "require('@letta-ai/letta-client')"` in tests/conformance), measured interleaved in the
# same run (median of ROUNDS after a warm-up), with peak RSS, and their ratios. Goals (issue #9): at
# most 2x lua5.4, at least 50x faster than node with the official client.
#   bench/startup.sh [ROUNDS]     (default 101; TS=0 leaves node out)
# Raw figures: build/bench/startup.txt, one line per program (bench/spawn_time.c's format).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${1:-101}
TS=${TS:-1}
. bench/lib.sh
bench_build spawn_time
NODE=()
if [ "$TS" != 0 ]; then
  bench_node
  NODE=(node_client -- node -e "require('@letta-ai/letta-client')")
fi

BIN=$(realpath "$LETTASH")
# From tests/conformance, where node finds the client the way a project using it would.
(cd tests/conformance &&
  "$ROOT/build/bench/spawn_time" "$ROUNDS" lettash -- "$BIN" -e '' lua5.4 -- lua5.4 -e '' "${NODE[@]}") \
  >build/bench/startup.txt
awk -v rounds="$ROUNDS" '
  { name[NR] = $1; med[NR] = $2; min[NR] = $3; max[NR] = $4; rss[NR] = $6; rmin[NR] = $7; rmax[NR] = $5 }
  END {
    printf "start-up, median of %d runs (min-max), peak RSS median (min-max)\n", rounds
    for (i = 1; i <= NR; i++)
      printf "  %-11s %8.3f ms (%.3f-%.3f)  %5.1f MB (%.1f-%.1f)\n", name[i], med[i], min[i], max[i], rss[i], rmin[i], rmax[i]
    ratio = med[1] / med[2]
    printf "ratio lettash/lua5.4: %.2fx (goal <= 2x: %s)\n", ratio, ratio <= 2 ? "met" : "NOT met"
    if (NR > 2) {
      ratio = med[3] / med[1]
      printf "ratio node_client/lettash: %.0fx (goal >= 50x: %s)\n", ratio, (ratio >= 50) ? "met" : "NOT met"
    }
  }' build/bench/startup.txt
