#!/usr/bin/env bash
# Builds the libFuzzer targets (clang) and fuzzes each for SECONDS, starting from the seed corpus
# in tests/fuzz/corpus/<target>/. SECONDS=0 only replays the corpus: a regression run, as
# tests/run.sh does. New inputs found go to build/fuzz/corpus/<target>/, crashes to build/fuzz/.
#   tests/fuzz/run.sh [SECONDS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
SECONDS_EACH=${1:-60}
OUT=$ROOT/build/fuzz
mkdir -p "$OUT"
LUA_CFLAGS=$(pkg-config --cflags lua5.4)
FLAGS="-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $LUA_CFLAGS $(pkg-config --cflags libcurl) -Isrc"
FLAGS+=" -DLH_SOURCE_ROOT=\"$ROOT\"" # fuzz_store loads lua/letta/store.lua from the tree

# target -> its sources. headers: the HTTP response-header parser behind request:headers();
# store: the store's record read path (LMDB value -> store.lua -> json.decode).
declare -A SOURCES=([json]="tests/fuzz/fuzz_json.c src/lh_json.c src/lh_util.c" [sse]="tests/fuzz/fuzz_sse.c src/lh_sse.c src/lh_util.c"
                    [headers]="tests/fuzz/fuzz_headers.c src/lh_headers.c"
                    [store]="tests/fuzz/fuzz_store.c src/lh_lmdb.c src/lh_json.c src/lh_util.c")
# sandbox: a script the host did not write, through lh_run_string/lh_call/lh_step: the whole
# runtime (premake5.lua's runtime_files), the Lua library compiled in; libcurl is dlopened.
RUNTIME="src/lh_runtime.c src/lh_host.c src/lh_json.c src/lh_sse.c src/lh_headers.c src/lh_curl.c src/lh_http.c"
RUNTIME+=" src/lh_lmdb.c src/lh_util.c build/gen/lh_embedded.c"
SOURCES[sandbox]="tests/fuzz/fuzz_sandbox.c $RUNTIME"
mkdir -p build/gen
lua5.4 src/embed.lua lua build/gen/lh_embedded.c # rewritten only when lua/ changed
passed=0 failed=0
for target in "${!SOURCES[@]}"; do
  # shellcheck disable=SC2086
  clang $FLAGS -o "$OUT/fuzz_$target" ${SOURCES[$target]} -l:liblua5.4-cjson.a -l:liblua5.4.a -llmdb -lm -ldl
  mkdir -p "$OUT/corpus/$target"
  if [ "$SECONDS_EACH" = 0 ]; then
    args=(-runs=0 "$ROOT/tests/fuzz/corpus/$target")
  else
    args=(-max_total_time="$SECONDS_EACH" -print_final_stats=1 "$OUT/corpus/$target" "$ROOT/tests/fuzz/corpus/$target")
  fi
  dict=$ROOT/tests/fuzz/$target.dict
  if [ -f "$dict" ]; then args=(-dict="$dict" "${args[@]}"); fi
  # (run from $OUT so that crash-* files land there)
  if (cd "$OUT" && "./fuzz_$target" "${args[@]}" 2>&1 | tail -n 12); then
    echo "ok - fuzz $target"; passed=$((passed + 1))
  else
    echo "not ok - fuzz $target"; failed=$((failed + 1))
  fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
