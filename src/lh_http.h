/* letta.http: the non-blocking HTTP transport (libcurl multi) under the Lua client. */
#ifndef LH_HTTP_H
#define LH_HTTP_H

#include "lua.h"

/* Opens the C module `letta.http`: session{...}, step(timeout_ms), inflight(). See lh_http.c. */
int luaopen_letta_http(lua_State *L);

#endif
