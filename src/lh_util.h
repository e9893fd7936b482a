/* Small helpers the C modules share. */
#ifndef LH_UTIL_H
#define LH_UTIL_H

#include <stddef.h>
#include <string.h>

#include "lauxlib.h"

/* A growable byte buffer, the one the C parsers and the HTTP layer share. Zero-initialised is
 * empty; data is NUL-terminated once anything was added (the NUL is not counted in len). */
typedef struct lh_buf {
  char *data;
  size_t len, cap;
} lh_buf;

/* lh_buf_add's path that grows the buffer (out of line: the common case below is inlined, as the
 * JSON encoder appends a few bytes at a time). */
int lh_buf_add_grow(lh_buf *b, const void *s, size_t n);

/* Appends n bytes of s. Returns 0, or -1 when memory runs out (the buffer is then unchanged). */
static inline int lh_buf_add(lh_buf *b, const void *s, size_t n) {
  if (b->cap - b->len <= n) return lh_buf_add_grow(b, s, n); /* (no room for n bytes and the NUL) */
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}
/* Appends one byte (same result). */
int lh_buf_addc(lh_buf *b, char c);
/* Empties the buffer, keeping its memory for reuse. */
void lh_buf_reset(lh_buf *b);
/* Frees the memory; the buffer is empty again. */
void lh_buf_free(lh_buf *b);

/* Raises "bad field 'field' to 'fname' (msg)": luaL_argerror for a field of an options table. */
int lh_field_error(lua_State *L, const char *fname, const char *field, const char *msg);
/* Raises "bad field 'field' to 'fname' (<tname> expected, got <type of the value at idx>)". */
int lh_field_typeerror(lua_State *L, int idx, const char *fname, const char *field, const char *tname);

/* t.field (t at idx) as an integer, or def when it is nil; anything else raises a field error. */
lua_Integer lh_opt_field_integer(lua_State *L, int idx, const char *fname, const char *field,
                                 lua_Integer def);

/* Registers the metatable `name` for a userdata class: methods as __index, gc as __gc, close as
 * __close, and tostring (optional) as __tostring. Leaves the stack as it was. */
void lh_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
              lua_CFunction close, lua_CFunction tostring);

#endif
