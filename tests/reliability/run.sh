#!/usr/bin/env bash
# The reliability suite: the fault matrix (every workflow under every emulator fault) and the
# crash points (kill -9 at seeded random moments, then recovery), both against the emulator on
# loopback, through the CLI scripts. Ends with one line "N passed, N failed".
#
#   tests/reliability/run.sh           fast: each workflow's main route under 8 of the faults, and
#                                      6 kills per workflow (what tests/run.sh runs)
#   tests/reliability/run.sh --full    every relevant route under every fault, 30 kills per workflow
#   tests/reliability/run.sh --all     everything the reliability issue asks, from one command:
#                                      --full, then every fuzz target FUZZ_SECONDS (default 600)
#                                      each, then the whole test suite on the sanitizer build
#
# Needs the release build (scripts/setup.sh release); LETTASH_BIN picks another binary, and
# LETTASH_LUA_PATH another copy of the Lua library (tests/run.sh unsets it: the compiled-in one).
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
BIN=${LETTASH_BIN:-$ROOT/bin/lettash}
MODE=() ALL=0
case "${1:-}" in
  --full) MODE=(--full) ;;
  --all) MODE=(--full) ALL=1 ;;
esac
unset LETTASH_INIT

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

# --all: the fuzzers and the sanitizer build too, each adding its own "N passed, N failed".
add_suite() {
  printf '\n== %s\n' "$*"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]} line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed$' "$log" | tail -n 1)
  if [ -n "$line" ]; then p=${line%% passed*}; f=${line##*, }; f=${f%% failed}; else p=0 f=1; fi
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  total_passed=$((total_passed + p))
  total_failed=$((total_failed + f))
}
if [ "$ALL" = 1 ]; then
  add_suite tests/fuzz/run.sh "${FUZZ_SECONDS:-600}"
  ASAN=1 add_suite tests/run.sh
fi
echo
echo "reliability ${MODE[*]:-(fast)}$([ "$ALL" = 1 ] && echo ' + fuzzing + sanitizers'): $(( $(date +%s) - start )) s"
echo "$total_passed passed, $total_failed failed"
[ "$total_failed" -eq 0 ]
