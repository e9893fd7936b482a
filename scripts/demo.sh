#!/usr/bin/env bash
# The main job, from a fresh Debian 12 machine: install what is missing, build, and show lettash.
# (The Letta workflows join this demo as they land: onboarding, chat and import against the
# bundled emulator when LETTA_BASE_URL is not set.)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

scripts/setup.sh release
echo
bin/lettash -v
bin/lettash -e '
local letta = require "letta"
local doc = letta.json.decode([[{"id": "block-1", "limit": 5000, "tags": [], "description": null}]])
print(("letta %s: limit is an %s, tags stay an array: %s"):format(
  letta._VERSION, math.type(doc.limit), letta.json.encode({tags = doc.tags})))'
echo
echo "Explore in the REPL:  bin/lettash        (letta is loaded; try: letta.versions())"
echo "Run a script:         bin/lettash script.lua args..."
