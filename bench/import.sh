#!/usr/bin/env bash
# Bulk passage import against the Letta emulator at --latency-ms 20 (a remote server), the same
# generated JSONL file imported by:
#   lettash_c1    bin/lettash scripts/import.lua --concurrency 1   (the first N1 lines: rate is what counts)
#   lettash_c16   bin/lettash scripts/import.lua --concurrency 16
#   ts_c16        the official TypeScript client (@letta-ai/letta-client 1.12.1, bench/import_ts.mjs),
#                 client.agents.passages.create with 16 concurrent promises
# interleaved ROUNDS times, each run on a fresh server state and a fresh agent (and a fresh store for
# lettash). Measured per run: passages/s (as each importer times itself, from its first request to
# its last answer), and from wait4 (bench/rusage.c) wall time, CPU seconds and peak RSS of the
# importing process. Goals (issue #6): c16 >= 80% of the ideal 16/latency rate, >= 10x c1, >= the
# official client's rate with <= 1/4 of its peak RSS.
#   bench/import.sh [N]          (default 2000; N1=200, ROUNDS=3, LATENCY_MS=20 from the environment)
#   bench/import.sh --big [N]    also imports 1,000,000 lines at latency 0 (minutes), goal peak RSS < 30 MB
#   bench/import.sh --text-big   only this: plain text files of 10 MB and 40 MB without a blank line
#                                (one paragraph each) read with --dry-run: time and peak RSS, goals
#                                linear time (40 MB within 5x the 10 MB time) and flat memory
# Raw figures, one run a line: build/bench/import.txt (and build/bench/import_big.txt,
# build/bench/import_text.txt).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIG=0 TEXT_BIG=0
if [ "${1:-}" = "--big" ]; then BIG=1; shift; fi
if [ "${1:-}" = "--text-big" ]; then TEXT_BIG=1; shift; fi
N=${1:-2000}
N1=${N1:-200}
ROUNDS=${ROUNDS:-3}
LAT=${LATENCY_MS:-20}
C=16
LIMIT=300 # seconds any one run may take (the --big run: BIG_LIMIT)
BIG_LINES=${BIG_LINES:-1000000}
BIG_LIMIT=${BIG_LIMIT:-3600}

. bench/lib.sh
bench_build rusage

# --text-big: one paragraph of 10 MB and one of 40 MB (lines of 14 words, no blank line), cut into
# 8,000-byte passages by the text reader; --dry-run, so that the reader alone is measured.
if [ "$TEXT_BIG" = 1 ]; then
  RAW=build/bench/import_text.txt
  echo "# MB chunks user_s sys_s wall_s peak_rss_kb" >"$RAW"
  for mb in 10 40; do
    file=build/bench/import_text_${mb}mb.txt
    if [ ! -f "$file" ]; then
      python3 - "$mb" "$file" <<'EOF'
import random, sys
mb, path = int(sys.argv[1]), sys.argv[2]
rnd = random.Random(1)
words = "the of and to in a is that for it as was with be by on not he this are or his from at which".split()
with open(path, "w") as f:
    n = 0
    while n < mb * 1000 * 1000:
        line = " ".join(rnd.choice(words) for _ in range(14)) + "\n"
        f.write(line)
        n += len(line)
EOF
    fi
    out=build/bench/import_text.out
    cost=$(build/bench/rusage -t 600 sh -c 'exec "$@" >"$0"' "$out" "$LETTASH" scripts/import.lua \
             agent-00000000-0000-4000-8000-000000000000 "$file" --dry-run --json) ||
      { echo "import.sh: the $mb MB text run failed" >&2; exit 1; }
    chunks=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["bad"]==0, d; print(d["items"])' "$out")
    echo "$mb $chunks $cost" >>"$RAW"
  done
  awk '!/^#/ { mb[NR] = $1; printf "text, one paragraph of %d MB: %d passages, %.2f s, CPU %.2f s, peak RSS %.1f MB\n", $1, $2, $5, $3 + $4, $6 / 1024
               wall[$1] = $5; rss[$1] = $6 }
       END {
         printf "goal: linear time, 40 MB within 5x the time of 10 MB: %.1fx (%s)\n", wall[40] / wall[10], (wall[40] <= 5 * wall[10]) ? "met" : "NOT met"
         printf "goal: flat memory, 40 MB within 2 MB of 10 MB: %+.1f MB (%s)\n", (rss[40] - rss[10]) / 1024, (rss[40] - rss[10] <= 2048) ? "met" : "NOT met"
       }' "$RAW"
  exit 0
fi

bench_node

WORK=$(mktemp -d "${TMPDIR:-/tmp}/lettash-import-bench.XXXXXX")
stop_all() {
  emu_stop
  rm -rf "$WORK"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

emu_start "$WORK" "$LAT"
URL=$EMU_URL

# The input: N passages of a sentence or two, with a tag (the same file for every importer).
gen() { # gen LINES FILE
  python3 - "$1" "$2" <<'EOF'
import json, sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        f.write(json.dumps({"text": "Passage %d: the user mentioned topic %d on day %d, and asked to remember it." % (i, i % 97, i % 365),
                            "tags": ["bench", "t%d" % (i % 7)]}) + "\n")
EOF
}
FILE=build/bench/import.jsonl
gen "$N" "$FILE"
head -n "$N1" "$FILE" >"$WORK/small.jsonl"

# run NAME FILE N SMALL_FILE N1 -> "NAME items user_s sys_s wall_s peak_rss_kb rate"
run() {
  local name=$1 file=$2 n=$3 small=$4 n1=$5 agent out cmd items
  agent=$(emu_agent)
  out="$WORK/$name.out"
  rm -rf "$WORK/store"
  case $name in
    lettash_c1) items=$n1; cmd=("$LETTASH" scripts/import.lua "$agent" "$small" --concurrency 1 --json) ;;
    lettash_c16) items=$n; cmd=("$LETTASH" scripts/import.lua "$agent" "$file" --concurrency "$C" --json) ;;
    ts_c16) items=$n; cmd=(node bench/import_ts.mjs "$URL" "$agent" "$file" "$C") ;;
  esac
  local cost
  cost=$(LETTA_BASE_URL=$URL LETTA_STORE=$WORK/store build/bench/rusage -t "$LIMIT" \
           sh -c 'exec "$@" >"$0"' "$out" "${cmd[@]}") || { echo "import.sh: $name failed" >&2; exit 1; }
  local rate
  rate=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["sent"]==int(sys.argv[2]) and d["failed"]==0, d; print("%.1f" % d["rate"])' "$out" "$items") ||
    { echo "import.sh: $name did not import $items passages" >&2; exit 1; }
  echo "$name $items $cost $rate"
}

ORDER=(lettash_c1 lettash_c16 ts_c16)
RAW=build/bench/import.txt
TMP="$WORK/raw"
{
  echo "# bench/import.sh: N=$N N1=$N1 rounds=$ROUNDS latency_ms=$LAT concurrency=$C url=$URL $(date -u +%FT%TZ)"
  echo "# round name items user_s sys_s wall_s peak_rss_kb passages_per_s"
} >"$TMP"
head -n 200 "$FILE" >"$WORK/warm.jsonl"
head -n 20 "$FILE" >"$WORK/warm_small.jsonl"
for name in "${ORDER[@]}"; do # warm-up: page cache, node's compile cache, the emulator
  run "$name" "$WORK/warm.jsonl" 200 "$WORK/warm_small.jsonl" 20 >/dev/null
done
for r in $(seq "$ROUNDS"); do
  for name in "${ORDER[@]}"; do
    line=$(run "$name" "$FILE" "$N" "$WORK/small.jsonl" "$N1") && echo "$r $line" >>"$TMP"
  done
done
cp "$TMP" "$RAW"

awk -v lat="$LAT" -v c="$C" -v rounds="$ROUNDS" -v n="$N" -v n1="$N1" '
  function sort(a, m,   i, j, x) { for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
  function median(a, m) { return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
  /^#/ { next }
  { name = $2; k = ++cnt[name]; items[name] = $3; cpu[name, k] = $4 + $5; wall[name, k] = $6; rss[name, k] = $7; rate[name, k] = $8 }
  END {
    printf "passage import, emulator at %d ms latency, %d interleaved rounds: median (min-max)\n", lat, rounds
    printf "  %-12s %7s %24s %9s %9s %14s\n", "", "items", "passages/s", "wall s", "CPU s", "peak RSS MB"
    split("lettash_c1 lettash_c16 ts_c16", order, " ")
    for (o = 1; o <= 3; o++) {
      name = order[o]; m = cnt[name]
      for (i = 1; i <= m; i++) { q[i] = rate[name, i]; w[i] = wall[name, i]; u[i] = cpu[name, i]; s[i] = rss[name, i] }
      sort(q, m); sort(w, m); sort(u, m); sort(s, m)
      R[name] = median(q, m); M[name] = median(s, m) / 1024
      printf "  %-12s %7d %9.0f (%5.0f-%5.0f) %9.2f %9.2f %6.1f (%4.1f-%5.1f)\n", name, items[name], R[name], q[1], q[m],
             median(w, m), median(u, m), M[name], s[1] / 1024, s[m] / 1024
    }
    ideal = c * 1000 / lat
    printf "goal: concurrency %d >= 80%% of the ideal %d/s: %.0f%% (%s)\n", c, ideal, 100 * R["lettash_c16"] / ideal,
           (R["lettash_c16"] >= 0.8 * ideal) ? "met" : "NOT met"
    printf "goal: concurrency %d >= 10x concurrency 1: %.1fx (%s)\n", c, R["lettash_c16"] / R["lettash_c1"],
           (R["lettash_c16"] >= 10 * R["lettash_c1"]) ? "met" : "NOT met"
    printf "goal: >= the official client'"'"'s rate: %.2fx (%s)\n", R["lettash_c16"] / R["ts_c16"],
           (R["lettash_c16"] >= R["ts_c16"]) ? "met" : "NOT met"
    printf "goal: <= 1/4 of its peak RSS: %.1f MB vs %.1f MB = 1/%.1f (%s)\n", M["lettash_c16"], M["ts_c16"],
           M["ts_c16"] / M["lettash_c16"], (4 * M["lettash_c16"] <= M["ts_c16"]) ? "met" : "NOT met"
  }' "$RAW"

if [ "$BIG" = 1 ]; then
  BIG_FILE=build/bench/import_1m.jsonl
  if [ ! -f "$BIG_FILE" ] || [ "$(wc -l <"$BIG_FILE")" -ne "$BIG_LINES" ]; then
    python3 - "$BIG_LINES" "$BIG_FILE" <<'EOF'
import sys
n, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w") as f:
    for i in range(n):
        f.write('{"text":"line %d"}\n' % i)
EOF
  fi
  emu_admin /_emulator/config '{"latency_ms":0}' >/dev/null
  agent=$(emu_agent)
  rm -rf "$WORK/store"
  echo "importing $BIG_LINES lines at latency 0 (a few minutes)..."
  cost=$(LETTA_BASE_URL=$URL LETTA_STORE=$WORK/store build/bench/rusage -t "$BIG_LIMIT" \
           sh -c 'exec "$@" >"$0"' "$WORK/big.out" "$LETTASH" scripts/import.lua "$agent" "$BIG_FILE" --json) ||
    { echo "import.sh: the big import failed" >&2; exit 1; }
  summary=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["sent"], d["failed"], "%.0f" % d["rate"])' "$WORK/big.out")
  store_kb=$(( $(stat -c %s "$WORK/store") / 1024 ))
  echo "# lines sent failed passages_per_s user_s sys_s wall_s peak_rss_kb store_kb" >build/bench/import_big.txt
  echo "$BIG_LINES $summary $cost $store_kb" >>build/bench/import_big.txt
  awk '!/^#/ {
    printf "big: %d lines, %d sent, %d failed, %d passages/s, %.0f s, CPU %.1f s, peak RSS %.1f MB (store file %.0f MB)\n",
           $1, $2, $3, $4, $7, $5 + $6, $8 / 1024, $9 / 1024
    printf "goal: %d lines with peak RSS < 30 MB: %s\n", $1, ($2 == $1 && $3 == 0 && $8 < 30 * 1024) ? "met" : "NOT met"
  }' build/bench/import_big.txt
fi
