/* lettash: a Lua 5.4 runtime for automating Letta servers. This is the public C API of the
 * runtime library (bin/liblettash.a); the command-line host src/lh_main.c is a thin user of it. */
#ifndef LETTASH_H
#define LETTASH_H

#include "lua.h"

#define LETTASH_VERSION "0.1.0"

/* Flags for lh_openlibs. */
#define LH_NOENV 1 /* ignore LETTASH_LUA_PATH (and, as in lua.c, LUA_PATH/LUA_CPATH) */

/* Opens Lua's standard libraries and registers lettash's modules in package.preload: the Lua
 * library compiled into the binary (`letta`, `letta.*`), its C parts and `cjson`. Loads nothing
 * yet: a module costs only when required. With LETTASH_LUA_PATH set (a ';'-separated list of
 * directories holding letta/), the Lua sources are read from there instead. Raises Lua errors
 * only on memory exhaustion (call it inside lua_pcall, as lua.c does). */
void lh_openlibs(lua_State *L, int flags);

/* Version strings of lettash, Lua, libcurl and LMDB, e.g. for `lettash -v`. The libcurl one loads
 * libcurl; it reads "unavailable (<why>)" when it cannot be loaded. Static storage; never NULL. */
const char *lh_version_curl(void);
const char *lh_version_lmdb(void);

#endif
