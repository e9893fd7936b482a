/* Small helpers the C modules share. */
#ifndef LH_UTIL_H
#define LH_UTIL_H

#include "lauxlib.h"

/* Registers the metatable `name` for a userdata class: methods as __index, gc as __gc, close as
 * __close, and tostring (optional) as __tostring. Leaves the stack as it was. */
void lh_class(lua_State *L, const char *name, const luaL_Reg *methods, lua_CFunction gc,
              lua_CFunction close, lua_CFunction tostring);

#endif
