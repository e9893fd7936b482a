-- The Lua module of lettash (require "letta") for stock Lua 5.4, built with the project's own
-- build (premake4 + make) and installed as letta.so. Needs Debian's (or your system's) lua-cjson,
-- LMDB and libcurl development files; see README.md.
rockspec_format = "3.0"
package = "lettash"
version = "0.1.0-1"
source = { url = "git+https://github.com/lettash/lettash.git", tag = "v0.1.0" }
description = {
  summary = "Letta automation in Lua: a non-blocking client, a local LMDB store, user workflows",
  detailed = "The letta module of lettash: the Letta REST client over libcurl's multi interface, "
    .. "with coroutine concurrency, an LMDB store and the onboard/chat/import workflows.",
  license = "MIT",
}
dependencies = { "lua >= 5.4, < 5.5" }
external_dependencies = {
  CURL = { header = "curl/curl.h" },
  LMDB = { header = "lmdb.h", library = "lmdb" },
}
build = {
  type = "make",
  build_target = "build",
  install_target = "install",
  build_variables = { CONFIG = "release" },
  install_variables = { PREFIX = "$(PREFIX)", LUA_CMOD = "$(LIBDIR)" },
}
