/* JSON codec between text and Lua 5.4 values (see lh_json.c for the rules it keeps). */
#ifndef LH_JSON_H
#define LH_JSON_H

#include <stddef.h>

#include "lua.h"

/* Decodes s[0..len) and pushes the value. array_mt/object_mt are stack indices of the marker
 * metatables given to decoded arrays and empty objects. Raises a Lua error naming the byte offset
 * on malformed input, invalid UTF-8 or nesting deeper than 1000. */
int lh_json_decode(lua_State *L, const char *s, size_t len, int array_mt, int object_mt);

/* Encodes the value at idx and pushes the JSON text. Raises on NaN/inf, invalid UTF-8, unsupported
 * types and cycles or nesting deeper than 1000. */
int lh_json_encode(lua_State *L, int idx, int array_mt, int object_mt);

/* Opens the C module `letta.json`: decode, encode, null, array, object, is_array. */
int luaopen_letta_json(lua_State *L);

#endif
