#!/usr/bin/env bash
# Installs what lettash needs on Debian 12 (only what is missing) and builds it.
#   scripts/setup.sh [release|debug|asan]     (default release; outputs in bin/, bin/debug/, bin/asan/)
# Used by scripts/demo.sh and tests/run.sh; NO_INSTALL=1 skips the package check.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CONFIG=${1:-release}

# lua5.4 and lua-busted go in one apt command, or busted pulls lua5.2 and takes over /usr/bin/lua.
PACKAGES=(lua5.4 lua-busted liblua5.4-dev lua-cjson lua-cjson-dev liblmdb-dev libcurl4-openssl-dev
          premake4 pkg-config libreadline-dev make gcc libc6-dev valgrind bsdutils clang libclang-rt-14-dev
          openssl lmdb-utils)

if [ "${NO_INSTALL:-0}" != 1 ]; then
  missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  command -v python3 >/dev/null || missing+=(python3)
  { command -v node && command -v npm; } >/dev/null || missing+=(nodejs npm)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${PACKAGES[@]}" "${missing[@]}" >/dev/null
  fi
fi

# premake embeds lua/letta/ when it generates; embed again so this build sees the latest sources.
premake4 --file=premake5.lua gmake >/dev/null
lua5.4 src/embed.lua lua build/gen/lh_embedded.c
if ! make -C build config="$CONFIG" -j"$(nproc)" >build/make.log 2>&1; then
  tail -40 build/make.log >&2
  echo "setup: build failed (build/make.log)" >&2
  exit 1
fi
grep -E 'warning|error' build/make.log >&2 || true
