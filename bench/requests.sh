#!/usr/bin/env bash
# CPU cost of a request: N x GET /v1/health/ to a private nginx on loopback, bin/lettash (answers
# decoded into Lua tables) beside a bare libcurl C loop and the official TypeScript client
# (bench/requests_ts.mjs), one after another on one kept-alive connection and with 64 in flight.
# The six runs are interleaved, ROUNDS times, so that a busy machine slows them alike. Goals
# (issues #4, #9): lettash at most 1.3x the libcurl loop's CPU per request, at least 10x less than
# the official client's; 64 in flight, at least 10x its requests/s with at most 1/5 of its memory.
#   bench/requests.sh [N]     (default 20000; ROUNDS=7, INFLIGHT=64, TS=1 from the environment;
#                              TS=0 leaves the official client out)
# Raw figures, one run a line: build/bench/requests.txt.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
N=${1:-20000}
ROUNDS=${ROUNDS:-7}
K=${INFLIGHT:-64}
LIMIT=120 # seconds any one run may take

TS=${TS:-1}
. bench/lib.sh
bench_build rusage curl_loop
[ "$TS" = 0 ] || bench_node

. bench/nginx.sh
nginx_start
URL=$NGINX_URL
RAW=build/bench/requests.txt
TMP=$(mktemp)
cleanup() { nginx_stop; rm -f "$TMP"; }
trap cleanup EXIT

# name -> command
declare -A CMD=(
  [lettash_seq]="$LETTASH bench/requests.lua $URL $N"
  [curl_seq]="build/bench/curl_loop $URL/v1/health/ $N"
  [lettash_$K]="$LETTASH bench/requests.lua $URL $N inflight $K"
  [curl_$K]="build/bench/curl_loop $URL/v1/health/ $N inflight $K"
  [ts_seq]="node bench/requests_ts.mjs $URL $N"
  [ts_$K]="node bench/requests_ts.mjs $URL $N inflight $K"
)
ORDER=(lettash_seq curl_seq ts_seq "lettash_$K" "curl_$K" "ts_$K")
[ "$TS" = 0 ] && ORDER=(lettash_seq curl_seq "lettash_$K" "curl_$K")

run() { # run NAME [N]: one line "NAME user sys wall rss_kb"
  local cmd=${CMD[$1]}
  [ $# -gt 1 ] && cmd=${cmd/ $N/ $2}
  local out
  # shellcheck disable=SC2086 # the commands are word lists on purpose
  out=$(build/bench/rusage -t "$LIMIT" $cmd) || { echo "requests.sh: $1 failed: $cmd" >&2; exit 1; }
  echo "$1 $out"
}

for name in "${ORDER[@]}"; do run "$name" $((N / 10)) >/dev/null; done # warm-up: caches, loader, nginx
{
  echo "# bench/requests.sh: N=$N rounds=$ROUNDS inflight=$K url=$URL $(date -u +%FT%TZ)"
  echo "# round name user_s sys_s wall_s peak_rss_kb"
} >"$TMP"
for r in $(seq "$ROUNDS"); do
  for name in "${ORDER[@]}"; do line=$(run "$name") && echo "$r $line" >>"$TMP"; done
done
cp "$TMP" "$RAW"

awk -v n="$N" -v k="$K" -v rounds="$ROUNDS" '
  function sort(a, m,   i, j, x) { for (i = 2; i <= m; i++) { x = a[i]; for (j = i - 1; j > 0 && a[j] > x; j--) a[j + 1] = a[j]; a[j + 1] = x } }
  function median(a, m) { return m % 2 ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2 }
  /^#/ { next }
  {
    name = $2; c = ++cnt[name]
    cpu[name, c] = ($3 + $4) / n * 1e6; usr[name, c] = $3 / n * 1e6; sys[name, c] = $4 / n * 1e6
    rps[name, c] = n / $5
    if ($6 > rss[name]) rss[name] = $6
  }
  END {
    printf "%d x GET /v1/health/ on loopback nginx, %d interleaved rounds: median (min-max)\n", n, rounds
    printf "  %-12s %-26s %14s %14s %12s %9s\n", "", "CPU us/request", "user us", "sys us", "requests/s", "peak RSS"
    no = split("lettash_seq curl_seq ts_seq lettash_" k " curl_" k " ts_" k, order, " ")
    for (o = 1; o <= no; o++) {
      name = order[o]; m = cnt[name]
      if (!m) continue
      for (i = 1; i <= m; i++) { a[i] = cpu[name, i]; u[i] = usr[name, i]; s[i] = sys[name, i]; q[i] = rps[name, i] }
      sort(a, m); sort(u, m); sort(s, m); sort(q, m)
      med[name] = median(a, m); mrps[name] = median(q, m)
      printf "  %-12s %6.2f (%6.2f-%6.2f)      %14.2f %14.2f %12.0f %6.1f MB\n", name, med[name], a[1], a[m],
             median(u, m), median(s, m), median(q, m), rss[name] / 1024
    }
    for (o = 1; o <= 2; o++) {
      mode = o == 1 ? "seq" : k
      ratio = med["lettash_" mode] / med["curl_" mode]
      printf "ratio lettash/curl, %s: %.2fx (goal <= 1.3x: %s)\n", o == 1 ? "sequential" : k " in flight",
             ratio, ratio <= 1.3 ? "met" : "NOT met"
      if (!cnt["ts_" mode]) continue
      ratio = med["ts_" mode] / med["lettash_" mode]
      printf "ratio official client/lettash CPU, %s: %.1fx (goal >= 10x: %s)\n", o == 1 ? "sequential" : k " in flight",
             ratio, (ratio >= 10) ? "met" : "NOT met"
    }
    if (cnt["ts_" k]) {
      ratio = mrps["lettash_" k] / mrps["ts_" k]
      printf "ratio lettash/official client requests/s, %s in flight: %.1fx (goal >= 10x: %s)\n", k, ratio, (ratio >= 10) ? "met" : "NOT met"
      ratio = rss["ts_" k] / rss["lettash_" k]
      printf "peak RSS, %s in flight: official client/lettash 1/%.1f (goal <= 1/5: %s)\n", k, ratio, (ratio >= 5) ? "met" : "NOT met"
    }
  }' "$RAW"
