/* libFuzzer target for the store's record decoding: the path letta.store takes from an LMDB value
 * to a Lua record. The store keeps records as JSON text, so there is no other decoder: the bytes go
 * into a real LMDB store (letta.lmdb, src/lh_lmdb.c) and come back through lua/letta/store.lua
 * (txn:get, txn:each, which call json.decode) and, when a record decodes to a table, through
 * store.put_user/delete_user, which read the fields the workflows read. Inputs: "key\0value" (no
 * NUL: the whole input is the value under a fixed key). Every transaction is aborted, so the file
 * never grows; it lives in a temporary directory removed at exit. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lauxlib.h"
#include "lh_json.h"
#include "lh_lmdb.h"
#include "lualib.h"

#ifndef LH_SOURCE_ROOT
#define LH_SOURCE_ROOT "."
#endif

static const char *DRIVER =
    "local store, path = ...\n"
    "local st = store.open(path)\n"
    "return function(key, raw)\n"
    "  local txn <close> = st:begin(true)\n"
    "  txn.t:put('users', key, raw)\n"
    "  local ok, rec = pcall(txn.get, txn, 'users', key)\n"
    "  local ok2, n = pcall(function() local n = 0; for _ in txn:each('users') do n = n + 1 end; return n end)\n"
    "  if ok ~= ok2 then error('get and each disagree', 0) end\n"
    "  if ok and type(rec) == 'table' then\n"
    "    pcall(store.put_user, txn, rec)\n"
    "    if type(rec.username) == 'string' then pcall(store.delete_user, txn, rec.username) end\n"
    "  end\n"
    "  return 0\n"
    "end\n";

static char dir[64];
static char file[96];

static void cleanup(void) {
  char lock[128];
  snprintf(lock, sizeof lock, "%s-lock", file);
  unlink(file);
  unlink(lock);
  rmdir(dir);
}

/* letta.store's Lua dependencies (letta.errors, letta.loop, letta.retry...) load from the tree;
 * letta.http, which the loop needs but the read path never calls, is a stub whose every function
 * raises (so a call from the read path would abort the run as a bug). */
static const char *SETUP =
    "package.path = ...\n"
    "package.preload['letta.http'] = function()\n"
    "  return setmetatable({}, {__index = function(_, k)\n"
    "    return function() error('letta.http.' .. k .. ' called by the store read path', 2) end\n"
    "  end})\n"
    "end\n"
    "return require 'letta.store'\n";

static int setup(lua_State *L) {
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_letta_json);
  lua_setfield(L, -2, "letta.json");
  lua_pushcfunction(L, luaopen_letta_lmdb);
  lua_setfield(L, -2, "letta.lmdb");
  lua_pop(L, 1);
  if (luaL_loadstring(L, SETUP)) return 0;
  lua_pushliteral(L, LH_SOURCE_ROOT "/lua/?.lua;" LH_SOURCE_ROOT "/lua/?/init.lua");
  if (lua_pcall(L, 1, 1, 0)) return 0;
  int store = lua_gettop(L);
  const char *tmp = getenv("TMPDIR");
  snprintf(dir, sizeof dir, "%s/lh_fuzz_store.XXXXXX", tmp && strlen(tmp) < 32 ? tmp : "/tmp");
  if (!mkdtemp(dir)) return 0;
  snprintf(file, sizeof file, "%s/store", dir);
  atexit(cleanup);
  if (luaL_loadstring(L, DRIVER)) return 0;
  lua_pushvalue(L, store);
  lua_pushstring(L, file);
  if (lua_pcall(L, 2, 1, 0)) return 0;
  lua_setglobal(L, "fuzz_one");
  lua_settop(L, 0);
  return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static lua_State *L;
  if (!L) {
    L = luaL_newstate();
    if (!setup(L)) {
      fprintf(stderr, "fuzz_store: set-up failed: %s\n", lua_tostring(L, -1));
      abort();
    }
  }
  const char *in = (const char *)data, *nul = memchr(in, 0, size);
  size_t klen = nul ? (size_t)(nul - in) : 0;
  if (klen == 0 || klen > 511) klen = 0;
  lua_getglobal(L, "fuzz_one");
  if (klen) lua_pushlstring(L, in, klen);
  else lua_pushliteral(L, "user");
  size_t voff = nul ? (size_t)(nul - in) + 1 : 0;
  lua_pushlstring(L, in + voff, size - voff);
  if (lua_pcall(L, 2, 1, 0) != LUA_OK) {
    /* decode errors are caught inside: whatever escapes is a bug in the store's read path */
    fprintf(stderr, "fuzz_store: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
