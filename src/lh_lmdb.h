/* letta.lmdb: the LMDB binding under the local store (lua/letta/store.lua). */
#ifndef LH_LMDB_H
#define LH_LMDB_H

#include "lua.h"

/* Opens the C module `letta.lmdb`: open(path, {map_size=, namespaces=}) -> environment with
 * begin(write), grow(factor), info(), sync(durable), trim(), close(); transactions with get, put,
 * del, next, commit, abort/close, active. See lh_lmdb.c for which calls raise and which return
 * nil, message, "map_full". */
int luaopen_letta_lmdb(lua_State *L);

#endif
