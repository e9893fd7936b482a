#!/usr/bin/env bash
# Start-up time of `bin/lettash -e ''` beside `lua5.4 -e ''`, measured interleaved in the same
# run (median of ROUNDS after a warm-up), and their ratio. Goal: at most 2x lua5.4.
#   bench/startup.sh [ROUNDS]     (default 200)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
ROUNDS=${1:-200}
[ -x bin/lettash ] || { premake4 --file=premake5.lua gmake >/dev/null && make -C build config=release >/dev/null; }
mkdir -p build/bench
cc -O2 -o build/bench/spawn_time bench/spawn_time.c

build/bench/spawn_time "$ROUNDS" lettash -- bin/lettash -e '' lua5.4 -- lua5.4 -e '' >build/bench/startup.txt
awk -v rounds="$ROUNDS" '
  { name[NR] = $1; med[NR] = $2; min[NR] = $3; max[NR] = $4; rss[NR] = $5 }
  END {
    printf "start-up, median of %d runs (min-max), peak RSS\n", rounds
    for (i = 1; i <= NR; i++)
      printf "  %-8s %7.3f ms (%.3f-%.3f)  %5.1f MB\n", name[i], med[i], min[i], max[i], rss[i]
    ratio = med[1] / med[2]
    printf "ratio lettash/lua5.4: %.2fx (goal <= 2x: %s)\n", ratio, ratio <= 2 ? "met" : "NOT met"
  }' build/bench/startup.txt
