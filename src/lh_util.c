/* Small helpers the C modules share (see lh_util.h). */
#include "lh_util.h"

#include <stdlib.h>
#include <string.h>

int lh_buf_add_grow(lh_buf *b, const void *s, size_t n) {
  if (n > (size_t)-1 - b->len - 1) return -1;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n + 1) cap = cap > (size_t)-1 / 2 ? b->len + n + 1 : cap * 2;
    char *p = (char *)realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
  }
  if (n) memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

int lh_buf_addc(lh_buf *b, char c) { return lh_buf_add(b, &c, 1); }

void lh_buf_reset(lh_buf *b) {
  b->len = 0;
  if (b->data) b->data[0] = '\0';
}

void lh_buf_free(lh_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

int lh_field_error(lua_State *L, const char *fname, const char *field, const char *msg) {
  return luaL_error(L, "bad field '%s' to '%s' (%s)", field, fname, msg);
}

int lh_field_typeerror(lua_State *L, int idx, const char *fname, const char *field, const char *tname) {
  const char *msg = lua_pushfstring(L, "%s expected, got %s", tname, luaL_typename(L, idx));
  return lh_field_error(L, fname, field, msg);
}

lua_Integer lh_opt_field_integer(lua_State *L, int idx, const char *fname, const char *field,
                                 lua_Integer def) {
  int isint;
  lua_getfield(L, idx, field);
  lua_Integer v = lua_tointegerx(L, -1, &isint);
  if (!isint && !lua_isnil(L, -1)) {
    if (lua_type(L, -1) == LUA_TNUMBER) lh_field_error(L, fname, field, "number has no integer representation");
    lh_field_typeerror(L, -1, fname, field, "number");
  }
  lua_pop(L, 1);
  return isint ? v : def;
}

void lh_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
              lua_CFunction close, lua_CFunction tostring) {
  if (luaL_newmetatable(L, name)) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, close);
    lua_setfield(L, -2, "__close");
    if (tostring) {
      lua_pushcfunction(L, tostring);
      lua_setfield(L, -2, "__tostring");
    }
  }
  lua_pop(L, 1);
}
