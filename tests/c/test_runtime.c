/* Unit tests of the runtime: the embedded Lua library and its module table. */
#include <stdlib.h>

#include "check.h"
#include "lauxlib.h"
#include "lettash.h"
#include "lh_embedded.h"
#include "lualib.h"

void test_runtime_embedded_library(void) {
  int found = 0;
  for (int i = 0; lh_embedded[i].name; i++) {
    if (strcmp(lh_embedded[i].name, "letta") == 0) {
      found = 1;
      CHECK_STR(lh_embedded[i].chunkname, "@letta/init.lua");
      CHECK(lh_embedded[i].length == strlen(lh_embedded[i].source));
    }
  }
  CHECK(found);
}

void test_runtime_require_letta(void) {
  unsetenv("LETTASH_LUA_PATH");
  lua_State *L = luaL_newstate();
  lh_openlibs(L, 0);
  CHECK(luaL_dostring(L, "local l = require 'letta' return l._VERSION .. ' ' .. debug.getinfo(l.versions, 'S').source") == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), LETTASH_VERSION " @letta/init.lua");
  lua_settop(L, 0);
  CHECK(luaL_dostring(L, "return require('cjson').encode({1})") == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "[1]");
  lua_close(L);
}

void test_runtime_source_tree_override(void) {
  setenv("LETTASH_LUA_PATH", "/nonexistent-dir", 1);
  lua_State *L = luaL_newstate();
  lh_openlibs(L, 0);
  CHECK(luaL_dostring(L, "return require 'letta'") != LUA_OK); /* looked only in the tree */
  CHECK(strstr(lua_tostring(L, -1), "/nonexistent-dir/letta/init.lua") != NULL);
  lua_close(L);
  L = luaL_newstate();
  lh_openlibs(L, LH_NOENV); /* -E ignores the variable */
  CHECK(luaL_dostring(L, "return require('letta')._VERSION") == LUA_OK);
  lua_close(L);
  unsetenv("LETTASH_LUA_PATH");
}
