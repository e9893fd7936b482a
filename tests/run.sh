#!/usr/bin/env bash
# The one test command: installs what is missing (Debian 12), builds, runs every suite and ends
# with one line "N passed, N failed". ASAN=1 builds and tests bin/asan/ (AddressSanitizer+UBSan).
# Suites: C unit tests, Lua specs (busted inside bin/lettash), the emulator's tests, and the
# conformance run of the official npm client against the emulator.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

say() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------------------------------------
# 1. Install what is missing and build (scripts/setup.sh).
if [ "${ASAN:-0}" = 1 ]; then
  CONFIG=asan BINDIR=bin/asan
  export LETTASH_ASAN=1
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:strict_string_checks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
else
  CONFIG=release BINDIR=bin
fi
export LETTASH_BIN="$ROOT/$BINDIR/lettash"
unset LETTASH_LUA_PATH LETTASH_INIT

say "set-up and build ($CONFIG)"
if ! scripts/setup.sh "$CONFIG"; then
  echo "tests/run.sh: set-up or build failed"
  echo "0 passed, 1 failed"
  exit 1
fi

# ---------------------------------------------------------------------------------------------
# 2. Suites. Each prints its own "N passed, N failed" last; a suite that dies without it counts
# as one failure.
TOTAL_PASSED=0 TOTAL_FAILED=0
SUMMARY=()
LOGDIR=$(mktemp -d)
trap 'rm -rf "$LOGDIR"' EXIT

run_suite() {
  local name=$1; shift
  say "$name"
  local log="$LOGDIR/$name.log"
  "$@" 2>&1 | tee "$log"
  local rc=${PIPESTATUS[0]}
  local line passed=0 failed=1
  line=$(grep -E '^([A-Za-z-]+: )?[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  if [ -n "$line" ]; then
    passed=$(sed -E 's/^([A-Za-z-]+: )?([0-9]+) passed.*/\2/' <<<"$line")
    failed=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$line")
    [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ] && failed=1 # died after its summary (e.g. a leak report)
  fi
  TOTAL_PASSED=$((TOTAL_PASSED + passed))
  TOTAL_FAILED=$((TOTAL_FAILED + failed))
  SUMMARY+=("$(printf '%-14s %5d passed %5d failed  (exit %d)' "$name" "$passed" "$failed" "$rc")")
}

skip_suite() { SUMMARY+=("$(printf '%-14s skipped: %s' "$1" "$2")"); }

run_suite c-unit "$BINDIR/lettash_tests"
run_suite lua-specs "$BINDIR/lettash" /usr/bin/busted

run_suite fuzz-corpus tests/fuzz/run.sh 0   # replays the fuzz seed corpus and past crashes

# These two do not run lettash's code, so the sanitizer build has nothing to add to them.
if [ "${ASAN:-0}" = 1 ]; then
  skip_suite emulator "runs no lettash code (ASAN=1)"
  skip_suite conformance "runs no lettash code (ASAN=1)"
else
  if [ -f tests/emulator/run_tests.py ]; then run_suite emulator python3 tests/emulator/run_tests.py
  else skip_suite emulator "not present"; fi
  if [ -f tests/conformance/run.sh ]; then run_suite conformance bash tests/conformance/run.sh
  else skip_suite conformance "not present"; fi
  run_suite reliability bash tests/reliability/run.sh
fi

say "summary ($CONFIG)"
printf '%s\n' "${SUMMARY[@]}"
echo "$TOTAL_PASSED passed, $TOTAL_FAILED failed"
[ "$TOTAL_FAILED" -eq 0 ]
