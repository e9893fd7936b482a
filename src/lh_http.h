/* letta.http: the non-blocking HTTP transport (libcurl multi) under the Lua client. */
#ifndef LH_HTTP_H
#define LH_HTTP_H

#include "lua.h"

/* Opens the C module `letta.http`: session{...}, step(timeout_ms), inflight(). See lh_http.c. */
int luaopen_letta_http(lua_State *L);

/* The sockets of every session with transfers in flight (see lh_pollfds in lettash.h). */
struct pollfd;
int lh_http_pollfds(lua_State *L, struct pollfd *fds, int max, int *timeout_ms);

#endif
