/* letta.http: the non-blocking HTTP transport (libcurl multi) under the Lua client. */
#ifndef LH_HTTP_H
#define LH_HTTP_H

#include "lua.h"

/* Opens the C module `letta.http`: session{...}, step(timeout_ms), wake(ms), inflight(), now().
 * See lh_http.c. */
int luaopen_letta_http(lua_State *L);

/* The sockets of every session with transfers in flight (see lh_pollfds in lettash.h). */
struct pollfd;
int lh_http_pollfds(lua_State *L, struct pollfd *fds, int max, int *timeout_ms);

/* Installs (copies) or, with NULL, removes the host's loop hooks (see lh_set_loop_hooks in
 * lettash.h). Runs its Lua part protected: returns LH_OK, LH_ERR_ARG or LH_ERR_MEMORY. */
struct lh_loop_hooks;
int lh_http_set_hooks(lua_State *L, const struct lh_loop_hooks *hooks);

#endif
