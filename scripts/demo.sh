#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install what is missing, build, then run the demo
# workflow (scripts/demo.lua): create an agent, onboard two users, chat as each (streamed), show
# each persona attached only during its own send, import a sample of archival memory and search
# it, run doctor. Without LETTA_BASE_URL it runs
# against the bundled emulator, started here and stopped at the end; with it, against that server,
# and then removes everything it created there (users, persona and memory blocks, passages, the
# agent), also when it fails half way. Its store is a temporary one: yours is not touched.
# The agent gets a model the server lists (GET /v1/models/): LETTA_MODEL (and LETTA_EMBEDDING)
# choose one, else the first listed is used.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

scripts/setup.sh release
echo
bin/lettash -v

TMP=$(mktemp -d)
EMU_PID=
cleanup() {
  [ -n "$EMU_PID" ] && kill "$EMU_PID" 2>/dev/null && wait "$EMU_PID" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

if [ -z "${LETTA_BASE_URL:-}" ]; then
  python3 tests/emulator/letta_emulator.py --port 0 >"$TMP/emulator.out" 2>"$TMP/emulator.err" &
  EMU_PID=$!
  for _ in $(seq 100); do grep -q '^LETTA_EMULATOR_URL=' "$TMP/emulator.out" && break; sleep 0.1; done
  LETTA_BASE_URL=$(sed -n 's/^LETTA_EMULATOR_URL=//p' "$TMP/emulator.out")
  [ -n "$LETTA_BASE_URL" ] || { echo "demo: the emulator did not start:"; cat "$TMP/emulator.err"; exit 1; }
  export LETTA_BASE_URL LETTASH_DEMO_EMULATOR=1
  echo "(no LETTA_BASE_URL: using the bundled emulator at $LETTA_BASE_URL)"
fi
echo
bin/lettash scripts/demo.lua
echo
echo "Explore in the REPL:  LETTA_BASE_URL=... bin/lettash    (letta and client are ready)"
