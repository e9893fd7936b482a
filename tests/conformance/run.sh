#!/usr/bin/env bash
# Conformance run: the official Letta TypeScript SDK (@letta-ai/letta-client, pinned in
# package.json) drives tests/emulator/letta_emulator.py through a whole workflow (workflow.mjs).
#
# Two passes: one against an emulator without a password, one against an emulator started with
# --password, where the SDK's apiKey is the self-hosted password.
#
# Works from any current directory. Needs python3 and node >= 18 with npm (installs nodejs/npm
# with apt-get if node is missing). Last line of output: `N passed, N failed`; exit 1 if any failed.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
EMULATOR="$ROOT/tests/emulator/letta_emulator.py"
SDK_VERSION="1.12.1"
# the SDK reads these; keep the passes independent of the caller's environment
unset LETTA_API_KEY LETTA_BASE_URL LETTA_CUSTOM_HEADERS LETTA_LOG || true

total_pass=0
total_fail=0
emu_pid=""
emu_out=""
node_pid=""
tmpdir="$(mktemp -d "${TMPDIR:-/tmp}/letta-conformance.XXXXXX")"

emu_rc=0
stop_emulator() { # sets emu_rc: the emulator's exit status after SIGTERM (137 if it had to be killed)
  emu_rc=0
  if [[ -n "$emu_pid" ]]; then
    if kill -0 "$emu_pid" 2>/dev/null; then
      kill -TERM "$emu_pid" 2>/dev/null || true
      for _ in $(seq 1 50); do
        kill -0 "$emu_pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL "$emu_pid" 2>/dev/null || true
    fi
    wait "$emu_pid" 2>/dev/null || emu_rc=$?
  fi
  emu_pid=""
}
finished=0
cleanup() {
  local rc=$?
  if [[ -n "$node_pid" ]]; then
    kill -TERM "$node_pid" 2>/dev/null || true
    wait "$node_pid" 2>/dev/null || true
  fi
  stop_emulator
  rm -rf "$tmpdir"
  if [[ "$finished" -eq 0 ]]; then # aborted (set -e, signal): still end with the count line
    echo "not ok - setup: run.sh aborted with status $rc"
    echo "${total_pass} passed, $((total_fail + 1)) failed"
    exit 1
  fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail_setup() { # reason
  echo "not ok - setup: $1"
  total_fail=$((total_fail + 1))
}

finish() {
  finished=1
  echo "${total_pass} passed, ${total_fail} failed"
  if [[ "$total_fail" -ne 0 ]]; then exit 1; fi
  exit 0
}

# ------------------------------------------------------------------ node + npm
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "# node/npm not found, installing nodejs and npm with apt-get" >&2
  SUDO=""
  if [[ "$(id -u)" -ne 0 ]]; then SUDO="sudo"; fi
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm; } >&2; then
    fail_setup "node and npm are missing and apt-get install nodejs npm failed"
    finish
  fi
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [[ "$node_major" -lt 18 ]]; then
  fail_setup "node >= 18 is required (global fetch), found $(node --version)"
  finish
fi
if ! command -v python3 >/dev/null 2>&1; then
  fail_setup "python3 not found"
  finish
fi

# ------------------------------------------------------------------ SDK install
installed_version() {
  node -p "require('$HERE/node_modules/@letta-ai/letta-client/package.json').version" 2>/dev/null || true
}
needs_install=0
if [[ ! -d "$HERE/node_modules" || "$(installed_version)" != "$SDK_VERSION" ]]; then
  needs_install=1
elif [[ -f "$HERE/package-lock.json" && ( ! -f "$HERE/node_modules/.package-lock.json" || "$HERE/package-lock.json" -nt "$HERE/node_modules/.package-lock.json" ) ]]; then
  needs_install=1
elif [[ "$HERE/package.json" -nt "$HERE/node_modules/.package-lock.json" ]]; then
  needs_install=1
fi
if [[ "$needs_install" -eq 1 ]]; then
  echo "# installing @letta-ai/letta-client@$SDK_VERSION with npm" >&2
  if [[ -f "$HERE/package-lock.json" ]]; then
    npm_cmd=(npm ci --no-audit --no-fund)
  else
    npm_cmd=(npm install --no-audit --no-fund)
  fi
  if ! (cd "$HERE" && "${npm_cmd[@]}") >&2; then
    fail_setup "'${npm_cmd[*]}' failed in $HERE"
    finish
  fi
  if [[ "$(installed_version)" != "$SDK_VERSION" ]]; then
    fail_setup "npm did not install @letta-ai/letta-client@$SDK_VERSION (got '$(installed_version)')"
    finish
  fi
fi

# ------------------------------------------------------------------ emulator
start_emulator() { # extra args...
  emu_out="$tmpdir/emulator.$RANDOM.out"
  local err="$emu_out.err"
  : >"$emu_out"
  python3 "$EMULATOR" --port 0 "$@" >"$emu_out" 2>"$err" &
  emu_pid=$!
  local url=""
  for _ in $(seq 1 100); do # up to 10 s
    url="$(sed -n 's/^LETTA_EMULATOR_URL=\(http:\/\/127\.0\.0\.1:[0-9][0-9]*\)$/\1/p' "$emu_out" | head -n1)"
    [[ -n "$url" ]] && break
    if ! kill -0 "$emu_pid" 2>/dev/null; then break; fi
    sleep 0.1
  done
  if [[ -z "$url" ]]; then
    echo "# emulator did not print LETTA_EMULATOR_URL; stdout:" >&2
    sed 's/^/#   /' "$emu_out" >&2 || true
    echo "# stderr:" >&2
    tail -n 30 "$err" | sed 's/^/#   /' >&2 || true
    stop_emulator
    return 1
  fi
  EMU_URL="$url"
}

run_pass() { # label, workflow args...
  local label="$1"
  shift
  local log="$tmpdir/$label.log"
  local rc=0
  node "$HERE/workflow.mjs" --label "$label" "$@" >"$log" 2>&1 &
  node_pid=$!
  wait "$node_pid" || rc=$?
  node_pid=""
  local summary
  summary="$(tail -n 1 "$log")"
  # everything but the workflow's own summary line goes to our output
  if [[ "$summary" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]]; then
    sed '$d' "$log"
    total_pass=$((total_pass + BASH_REMATCH[1]))
    total_fail=$((total_fail + BASH_REMATCH[2]))
    echo "# $label: $summary"
    if [[ "$rc" -ne 0 && "${BASH_REMATCH[2]}" -eq 0 ]]; then
      fail_setup "$label: workflow exited $rc with no failed check"
    fi
  else
    cat "$log"
    fail_setup "$label: workflow crashed (exit $rc) before printing its summary"
  fi
}

check_emulator_exit() { # label
  if [[ "$emu_rc" -eq 0 ]]; then
    echo "ok - $1: emulator exits 0 on SIGTERM"
    total_pass=$((total_pass + 1))
  else
    echo "not ok - $1: emulator exited $emu_rc after SIGTERM (expected 0)"
    total_fail=$((total_fail + 1))
  fi
  local lines
  lines="$(wc -l <"$emu_out")"
  if [[ "$lines" -eq 1 ]]; then
    echo "ok - $1: emulator printed exactly one stdout line"
    total_pass=$((total_pass + 1))
  else
    echo "not ok - $1: emulator printed $lines stdout lines (expected only LETTA_EMULATOR_URL=...)"
    total_fail=$((total_fail + 1))
  fi
}

if [[ ! -f "$EMULATOR" ]]; then
  fail_setup "emulator not found at $EMULATOR"
  finish
fi

# Pass 1: open server (self-hosted default, no auth header).
if start_emulator; then
  run_pass open --base-url "$EMU_URL"
  stop_emulator
  check_emulator_exit open
else
  fail_setup "open: emulator failed to start"
fi

# Pass 2: secure server; the SDK's apiKey is sent as `Authorization: Bearer <password>`.
password="conf-$RANDOM-$RANDOM-pw"
if start_emulator --password "$password"; then
  run_pass password --base-url "$EMU_URL" --api-key "$password"
  stop_emulator
  check_emulator_exit password
else
  fail_setup "password: emulator failed to start"
fi

finish
