#!/usr/bin/env bash
# Bulk passage import against the Letta emulator as a remote server whose embeddings cost what a
# provider's do (issue #15): --latency-ms 20 --embed-ms 150 --embed-concurrency 8. The same generated
# JSONL file imported by:
#   lettash_p1     bin/lettash scripts/import.lua --batch 1 --concurrency 16: the per-passage agent
#                  route, only the first N1 lines (at about 50 passages/s the rate is what counts)
#   lettash_batch  bin/lettash scripts/import.lua --concurrency 4: the archive batch route at its
#                  default batch (BATCH=n sets one)
#   ts_batch       the official TypeScript client (@letta-ai/letta-client 1.12.1,
#                  bench/import_batch_ts.mjs): client.archives.passages.createMany in batches of the
#                  same size, 4 in flight, the archive found as a user of the SDK would
# interleaved ROUNDS times, each run on a fresh server state and a fresh agent (and a fresh store for
# lettash). Measured per run: passages/s (as each importer times itself, from its first request to
# its last answer), and from wait4 (bench/rusage.c) wall time, CPU seconds and peak RSS of the
# importing process. Goals (issue #15): batched >= 10x per-passage; >= the official client's batched
# rate at <= 1/4 of its peak RSS.
#   bench/import.sh [N]          default 10000; N1=1000, ROUNDS=3, LATENCY_MS=20, EMBED_MS=150,
#                                EMBED_CONCURRENCY=8 from the environment (EMBED_MS=0: the emulator
#                                without the embedding flags)
#   bench/import.sh --latency [N]      issue #6's per-passage comparison instead: no embedding cost,
#                                lettash --batch 1 at concurrency 1 (the first N1=200) and 16, the
#                                official client's agents.passages.create with 16 promises
#                                (bench/import_ts.mjs); default N 2000
#   bench/import.sh --batch-sizes [N]  lettash batched and the official client at batch 10, 25, 50,
#                                100, 200 (SIZES=...), 4 in flight, the issue's setting, ROUNDS=1,
#                                default N 5000: to choose lettash's default batch
#   bench/import.sh --big [N]    the issue's setting, then 1,000,000 lines batched (the default batch)
#                                at latency 0 without embedding cost (minutes); goal peak RSS < 30 MB
#   bench/import.sh --text-big   only this: plain text files of 10 MB and 40 MB without a blank line
#                                (one paragraph each) read with --dry-run: time and peak RSS, goals
#                                linear time (40 MB within 5x the 10 MB time) and flat memory
# Raw figures, one run a line: build/bench/import.txt (--latency: import_latency.txt, --batch-sizes:
# import_batch_sizes.txt; import_big.txt, import_text.txt); the summary is bench/report.py's.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
MODE=embed BIG=0 TEXT_BIG=0
case ${1:-} in
  --big) BIG=1; shift ;;
  --text-big) TEXT_BIG=1; shift ;;
  --latency) MODE=latency; shift ;;
  --batch-sizes) MODE=sizes; shift ;;
esac
case $MODE in
  embed) N=${1:-10000} N1=${N1:-1000} ROUNDS=${ROUNDS:-3} ;;
  latency) N=${1:-2000} N1=${N1:-200} ROUNDS=${ROUNDS:-3} ;;
  sizes) N=${1:-5000} N1=0 ROUNDS=${ROUNDS:-1} ;;
esac
LAT=${LATENCY_MS:-20}
EMBED_MS=${EMBED_MS:-150}
EMBED_C=${EMBED_CONCURRENCY:-8}
SIZES=${SIZES:-10 25 50 100 200}
BATCH=${BATCH:-} # lettash's batch (empty: its default); the official client's is the same
C=16             # requests in flight, one passage each
BC=4             # batches in flight
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

EMU_FLAGS=()
if [ "$MODE" != latency ] && [ "$EMBED_MS" != 0 ]; then
  EMU_FLAGS=(--embed-ms "$EMBED_MS" --embed-concurrency "$EMBED_C")
else
  EMBED_MS=0 EMBED_C=0
fi
emu_start "$WORK" "$LAT" "${EMU_FLAGS[@]}"
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

# run NAME FILE ITEMS -> "NAME items user_s sys_s wall_s peak_rss_kb passages_per_s batch embeds", on
# a fresh agent (embeds: the embedding requests the server made, from the emulator's stats); $BATCH is
# lettash's batch (empty: its default), $TS_BATCH the official client's.
run() {
  local name=$1 file=$2 items=$3 agent out cmd cost rate embeds
  agent=$(emu_agent)
  out="$WORK/$name.out"
  rm -rf "$WORK/store"
  case $name in
    lettash_c1) cmd=("$LETTASH" scripts/import.lua "$agent" "$file" --batch 1 --concurrency 1 --json) ;;
    lettash_c16 | lettash_p1) cmd=("$LETTASH" scripts/import.lua "$agent" "$file" --batch 1 --concurrency "$C" --json) ;;
    lettash_batch) cmd=("$LETTASH" scripts/import.lua "$agent" "$file" ${BATCH:+--batch "$BATCH"} --concurrency "$BC" --json) ;;
    ts_c16) cmd=(node bench/import_ts.mjs "$URL" "$agent" "$file" "$C") ;;
    ts_batch) cmd=(node bench/import_batch_ts.mjs "$URL" "$agent" "$file" "$TS_BATCH" "$BC") ;;
  esac
  cost=$(LETTA_BASE_URL=$URL LETTA_STORE=$WORK/store build/bench/rusage -t "$LIMIT" \
           sh -c 'exec "$@" >"$0"' "$out" "${cmd[@]}") || { echo "import.sh: $name failed" >&2; cat "$out" >&2; exit 1; }
  rate=$(python3 - "$out" "$items" "$name" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["sent"] == int(sys.argv[2]) and d["failed"] == 0, d
# lettash batched really went through the batch route (it falls back to one passage a request on
# a server without it)
assert sys.argv[3] != "lettash_batch" or d.get("route") == "batch", "route %s" % d.get("route")
print("%.1f %d" % (d["rate"], d.get("batch", 1)))
EOF
) || { echo "import.sh: $name did not import $items passages as it should" >&2; exit 1; }
  embeds=$(curl -sf "$URL/_emulator/stats" | python3 -c 'import json,sys; print(json.load(sys.stdin)["embedding"]["requests"])')
  echo "$name $items $cost $rate $embeds"
}
slow() { [ "$1" = lettash_c1 ] || [ "$1" = lettash_p1 ]; } # these import only the first N1 lines

FILE=build/bench/import.jsonl
gen "$N" "$FILE"
case $MODE in
  embed) ORDER=(lettash_p1 lettash_batch ts_batch) RAW=build/bench/import.txt ;;
  latency) ORDER=(lettash_c1 lettash_c16 ts_c16) RAW=build/bench/import_latency.txt ;;
  sizes) ORDER=(lettash_batch ts_batch) RAW=build/bench/import_batch_sizes.txt ;;
esac
head -n "$N1" "$FILE" >"$WORK/small.jsonl"
head -n 200 "$FILE" >"$WORK/warm.jsonl"
head -n 20 "$FILE" >"$WORK/warm_small.jsonl"

# Warm-up (page cache, node's compile cache, the emulator); lettash's batched run tells its default
# batch, which the official client then uses.
TS_BATCH=${BATCH:-50}
for name in "${ORDER[@]}"; do
  if slow "$name"; then run "$name" "$WORK/warm_small.jsonl" 20 >/dev/null; continue; fi
  line=$(run "$name" "$WORK/warm.jsonl" 200)
  if [ "$name" = lettash_batch ] && [ -z "$BATCH" ]; then TS_BATCH=$(echo "$line" | cut -d' ' -f8); fi
done

TMP="$WORK/raw"
{
  echo "# bench/import.sh: mode=$MODE N=$N N1=$N1 rounds=$ROUNDS latency_ms=$LAT embed_ms=$EMBED_MS" \
       "embed_concurrency=$EMBED_C concurrency=$C batch_concurrency=$BC batch=$TS_BATCH url=$URL $(date -u +%FT%TZ)"
  echo "# round name items user_s sys_s wall_s peak_rss_kb passages_per_s batch embeds"
} >"$TMP"
for r in $(seq "$ROUNDS"); do
  if [ "$MODE" = sizes ]; then
    for b in $SIZES; do
      for name in "${ORDER[@]}"; do
        line=$(BATCH=$b TS_BATCH=$b run "$name" "$FILE" "$N") && echo "$r $line" >>"$TMP"
      done
    done
    continue
  fi
  for name in "${ORDER[@]}"; do
    if slow "$name"; then line=$(run "$name" "$WORK/small.jsonl" "$N1"); else line=$(run "$name" "$FILE" "$N"); fi
    echo "$r $line" >>"$TMP"
  done
done
cp "$TMP" "$RAW"
python3 bench/report.py --only "$(basename "$RAW" .txt)"

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
  emu_stop # a fresh emulator at latency 0, no embedding cost: what lettash's memory does is measured
  emu_start "$WORK" 0
  URL=$EMU_URL
  agent=$(emu_agent)
  rm -rf "$WORK/store"
  echo "importing $BIG_LINES lines at latency 0, batched (default batch; a few minutes)..."
  cost=$(LETTA_BASE_URL=$URL LETTA_STORE=$WORK/store build/bench/rusage -t "$BIG_LIMIT" \
           sh -c 'exec "$@" >"$0"' "$WORK/big.out" "$LETTASH" scripts/import.lua "$agent" "$BIG_FILE" --json) ||
    { echo "import.sh: the big import failed" >&2; exit 1; }
  summary=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["sent"], d["failed"], "%.0f" % d["rate"], d.get("batch", 1))' "$WORK/big.out")
  store_kb=$(( $(stat -c %s "$WORK/store") / 1024 ))
  echo "# lines sent failed passages_per_s batch user_s sys_s wall_s peak_rss_kb store_kb" >build/bench/import_big.txt
  echo "$BIG_LINES $summary $cost $store_kb" >>build/bench/import_big.txt
  awk '!/^#/ {
    printf "big: %d lines, batch %d, %d sent, %d failed, %d passages/s, %.0f s, CPU %.1f s, peak RSS %.1f MB (store file %.0f MB)\n",
           $1, $5, $2, $3, $4, $8, $6 + $7, $9 / 1024, $10 / 1024
    printf "goal: %d lines batched with peak RSS < 30 MB: %s\n", $1, ($2 == $1 && $3 == 0 && $5 > 1 && $9 < 30 * 1024) ? "met" : "NOT met"
  }' build/bench/import_big.txt
fi
