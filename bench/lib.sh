# What the benches share (sourced, not run): building what they measure, the official client's
# node_modules, and a private Letta emulator on loopback.
#   . bench/lib.sh   (from the repository root; defines functions only, starts nothing)
#   bench_build [tool...]        $LETTASH up to date, build/bench/<tool> compiled from bench/<tool>.c
#   bench_node                   node and @letta-ai/letta-client (tests/conformance/node_modules)
#   emu_start DIR [LATENCY_MS [FLAG...]]  sets EMU_URL and EMU_PID (the caller's EXIT trap must call
#                                emu_stop); FLAGs go to the emulator (--embed-ms 150 ...)
#   emu_stop                     idempotent
#   emu_admin PATH JSON          POST to the emulator; prints the answer
#   emu_agent                    empties the emulator; prints a fresh agent's id (with an embedding)

EMU_PID=
EMU_URL=
# The lettash binary measured: bin/lettash, or a fixed copy (bench/run.sh measures one binary
# throughout, even if the tree is rebuilt meanwhile).
LETTASH=${LETTASH:-bin/lettash}

bench_build() {
  # bin/lettash embeds lua/: rebuild when it is missing or older than a source.
  if [ "$LETTASH" = bin/lettash ] &&
     { [ ! -x bin/lettash ] || [ -n "$(find src lua premake5.lua -newer bin/lettash -print -quit)" ]; }; then
    NO_INSTALL=1 scripts/setup.sh release
  fi
  mkdir -p build/bench
  local tool libs
  for tool in "$@"; do
    [ -x "build/bench/$tool" ] && [ "build/bench/$tool" -nt "bench/$tool.c" ] && continue
    libs=
    [ "$tool" = curl_loop ] && libs=$(pkg-config --cflags --libs libcurl)
    # shellcheck disable=SC2086 # pkg-config's output is a word list
    cc -O2 -Wall -o "build/bench/$tool" "bench/$tool.c" $libs
  done
}

bench_node() {
  command -v node >/dev/null || { echo "bench: node is missing (scripts/setup.sh installs it)" >&2; return 1; }
  if [ ! -f tests/conformance/node_modules/@letta-ai/letta-client/package.json ]; then
    (cd tests/conformance && npm ci --silent --no-audit --no-fund)
  fi
}

emu_stop() {
  if [ -n "$EMU_PID" ]; then
    kill "$EMU_PID" 2>/dev/null || true
    wait "$EMU_PID" 2>/dev/null || true
    EMU_PID=
  fi
}

# The emulator on a free loopback port, its output in DIR; its request log kept short (benches do
# not read it).
emu_start() {
  local dir=$1 latency=${2:-0}
  shift 2 || shift
  python3 tests/emulator/letta_emulator.py --host 127.0.0.1 --port 0 --latency-ms "$latency" --max-log 100 "$@" \
    </dev/null >"$dir/emu.out" 2>"$dir/emu.err" &
  EMU_PID=$!
  EMU_URL=
  for _ in $(seq 200); do
    EMU_URL=$(sed -n 's/^LETTA_EMULATOR_URL=//p' "$dir/emu.out")
    [ -n "$EMU_URL" ] && break
    kill -0 "$EMU_PID" 2>/dev/null || break
    sleep 0.05
  done
  [ -n "$EMU_URL" ] || { echo "bench: the emulator did not start:" >&2; cat "$dir/emu.err" >&2; return 1; }
  case $EMU_URL in http://127.0.0.1:*) ;; *) echo "bench: emulator not on loopback: $EMU_URL" >&2; return 1 ;; esac
}

emu_admin() { curl -sf -X POST "$EMU_URL$1" -H 'Content-Type: application/json' -d "$2"; }

emu_agent() {
  local model embedding
  emu_admin /_emulator/reset '{}' >/dev/null
  # a model handle the server lists, as on a real server (Letta refuses an agent without one), and
  # an embedding one (without it the agent's archive has no embedding config and the archive batch
  # route fails, as archive_manager.create_passages_in_archive_async does)
  model=$(curl -sf "$EMU_URL/v1/models/" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["handle"])') || return 1
  embedding=$(curl -sf "$EMU_URL/v1/models/embedding" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["handle"])') ||
    return 1
  emu_admin /v1/agents/ "{\"name\":\"bench\",\"model\":\"$model\",\"embedding\":\"$embedding\",\"memory_blocks\":[]}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
