#!/usr/bin/env bash
# The reliability suite: the fault matrix (every workflow under every emulator fault) and the
# crash points (kill -9 at seeded random moments, then recovery), both against the emulator on
# loopback, through the CLI scripts. Ends with one line "N passed, N failed".
#
#   tests/reliability/run.sh           fast: each workflow's main route under 8 of the faults, and
#                                      6 kills per workflow (what tests/run.sh runs)
#   tests/reliability/run.sh --full    every relevant route under every fault, 30 kills per workflow
#
# Needs the release build (scripts/setup.sh release); LETTASH_BIN picks another binary.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BIN=${LETTASH_BIN:-$ROOT/bin/lettash}
MODE=()
[ "${1:-}" = "--full" ] && MODE=(--full)
unset LETTASH_LUA_PATH LETTASH_INIT

start=$(date +%s)
total_passed=0 total_failed=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for part in fault_matrix crash_points; do
  printf '\n== %s %s\n' "$part" "${MODE[*]:-(fast)}"
  "$BIN" "tests/reliability/$part.lua" "${MODE[@]}" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
  if [ -n "$line" ]; then
    p=${line%% passed*}; f=${line##*, }; f=${f%% failed}
    [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  else
    p=0 f=1 # died without its summary
  fi
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
done
echo
echo "reliability ${MODE[*]:-(fast)}: $(( $(date +%s) - start )) s"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
