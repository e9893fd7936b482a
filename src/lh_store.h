/* letta.lmdb: the LMDB binding under the local store (lua/letta/store.lua). */
#ifndef LH_STORE_H
#define LH_STORE_H

#include "lua.h"

/* Opens the C module `letta.lmdb`: open(path, {map_size=, namespaces=}) -> store with
 * begin(write), grow(factor), info(), close(); transactions with get, put, del, next, commit,
 * abort/close. See lh_store.c. */
int luaopen_letta_lmdb(lua_State *L);

#endif
