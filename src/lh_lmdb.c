/* letta.lmdb: the LMDB binding under letta.store. Mechanical and safe, after py-lmdb: a transaction
 * holds its environment alive; closing the environment aborts its transactions; a transaction
 * dropped or closed without commit is aborted, so LMDB's single writer lock is never left held.
 * Handles are kept as liolib keeps files: created closed, one release function per type, use after
 * close raises. Misuse and LMDB failures raise, except MDB_MAP_FULL from put and commit, which
 * returns nil, message, "map_full" (store.lua grows the map and runs the transaction again).
 * Friendly things (records, namespaces, map growth, update(fn)) are in lua/letta/store.lua. */
#include "lh_lmdb.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "lauxlib.h"
#include "lualib.h"
#include "lh_util.h"
#include "lmdb.h"

#define ENV_MT "letta.lmdb.Environment"
#define TXN_MT "letta.lmdb.Transaction"
#define MAX_DBS 32

typedef struct Txn Txn;

typedef struct {
  MDB_env *env; /* NULL: closed (or not open yet) */
  Txn *txns;    /* open transactions, aborted by close */
  Txn *writer;  /* the open write transaction, if any */
  int ndbs;
  char *names[MAX_DBS];
  MDB_dbi dbis[MAX_DBS];
} Env;

struct Txn {
  Env *e;
  MDB_txn *txn; /* NULL: closed (committed, aborted, or never begun) */
  int write;
  Txn *prev, *next;
};

/* Raises "lmdb: <what>: <LMDB's message>". */
static int lmdb_error(lua_State *L, const char *what, int rc) {
  return luaL_error(L, "lmdb: %s: %s", what, mdb_strerror(rc));
}

/* The result of put and commit: true; or, on MDB_MAP_FULL, a failure of the world that the caller
 * handles (luaL_fileresult's style): nil, message, "map_full". Anything else raises. */
static int write_result(lua_State *L, const char *what, int rc) {
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (rc != MDB_MAP_FULL) return lmdb_error(L, what, rc);
  luaL_pushfail(L);
  lua_pushfstring(L, "lmdb: %s: %s", what, mdb_strerror(rc));
  lua_pushliteral(L, "map_full");
  return 3;
}

/* mdb_txn_begin, adopting the map size another process grew the store to (MDB_MAP_RESIZED). */
static int begin_txn(MDB_env *env, unsigned flags, MDB_txn **txn) {
  int rc;
  for (int tries = 0; tries < 8; tries++) {
    rc = mdb_txn_begin(env, NULL, flags, txn);
    if (rc != MDB_MAP_RESIZED) break;
    mdb_env_set_mapsize(env, 0);
  }
  return rc;
}

static Env *check_env(lua_State *L, int idx) {
  Env *e = (Env *)luaL_checkudata(L, idx, ENV_MT);
  if (!e->env) luaL_error(L, "attempt to use a closed LMDB environment");
  return e;
}

static Txn *check_txn(lua_State *L, int idx) {
  Txn *t = (Txn *)luaL_checkudata(L, idx, TXN_MT);
  if (!t->txn) luaL_error(L, "attempt to use a closed LMDB transaction");
  return t;
}

/* ---------------------------------------------------------------------------------------------
 * Release: one function per type, idempotent, shared by close, __close and __gc */

static void txn_unlink(Txn *t) {
  Env *e = t->e;
  if (t->prev) t->prev->next = t->next;
  else if (e->txns == t) e->txns = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
  if (e->writer == t) e->writer = NULL;
}

/* Aborts the transaction unless it is closed already. */
static void txn_release(Txn *t) {
  if (!t->txn) return;
  mdb_txn_abort(t->txn);
  t->txn = NULL;
  txn_unlink(t);
}

/* Frees whatever of the environment was acquired, also half-way through open: its transactions,
 * the namespace names and LMDB's handle. */
static void env_release(Env *e) {
  while (e->txns) txn_release(e->txns);
  for (int i = 0; i < e->ndbs; i++) free(e->names[i]);
  e->ndbs = 0;
  if (e->env) mdb_env_close(e->env);
  e->env = NULL;
}

static int l_env_close(lua_State *L) {
  env_release((Env *)luaL_checkudata(L, 1, ENV_MT));
  return 0;
}

static int l_txn_close(lua_State *L) {
  txn_release((Txn *)luaL_checkudata(L, 1, TXN_MT));
  return 0;
}

static int l_env_tostring(lua_State *L) {
  Env *e = (Env *)luaL_checkudata(L, 1, ENV_MT);
  if (e->env) lua_pushfstring(L, "LMDB environment (%p)", (void *)e);
  else lua_pushliteral(L, "LMDB environment (closed)");
  return 1;
}

static int l_txn_tostring(lua_State *L) {
  Txn *t = (Txn *)luaL_checkudata(L, 1, TXN_MT);
  if (t->txn) lua_pushfstring(L, "LMDB transaction (%p)", (void *)t);
  else lua_pushliteral(L, "LMDB transaction (closed)");
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Opening */

/* mkdir -p of the directory part of path, mode 0700. */
static int make_parents(const char *path) {
  char buf[4096];
  size_t n = strlen(path);
  if (n >= sizeof buf) return ENAMETOOLONG;
  memcpy(buf, path, n + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST) return errno;
    *p = '/';
  }
  return 0;
}

/* Checks open's options table (at idx) before anything is acquired. Returns the map size and the
 * number of namespaces, whose list it leaves on the top of the stack. */
static size_t check_options(lua_State *L, int idx, int *nnames) {
  lua_Integer map_size = lh_opt_field_integer(L, idx, "open", "map_size", 1 << 20);
  if (map_size <= 0) lh_field_error(L, "open", "map_size", "must be positive");
  if (lua_getfield(L, idx, "namespaces") != LUA_TTABLE)
    lh_field_typeerror(L, -1, "open", "namespaces", "table");
  int n = (int)luaL_len(L, -1);
  if (n > MAX_DBS) lh_field_error(L, "open", "namespaces", "more than 32 names");
  for (int i = 1; i <= n; i++) {
    if (lua_rawgeti(L, -1, i) != LUA_TSTRING) {
      const char *field = lua_pushfstring(L, "namespaces[%d]", i);
      lh_field_typeerror(L, -2, "open", field, "string");
    }
    lua_pop(L, 1);
  }
  *nnames = n;
  return (size_t)map_size;
}

/* Opens LMDB's handle and every namespace (ns: the list, n names) into e. Returns 0 or the error,
 * with *what naming the step; e then holds what was acquired, for env_release. */
static int env_acquire(lua_State *L, Env *e, const char *path, size_t map_size, int ns, int n,
                       const char **what) {
  int rc, dead;
  MDB_txn *txn;
  *what = "create";
  if ((rc = mdb_env_create(&e->env))) {
    e->env = NULL; /* (nothing to close) */
    return rc;
  }
  mdb_env_set_maxdbs(e->env, MAX_DBS);
  mdb_env_set_maxreaders(e->env, 126);
  if ((rc = mdb_env_set_mapsize(e->env, map_size))) return rc;
  *what = "open";
  /* NOTLS: read transactions belong to Lua objects, not threads (coroutines share one thread). */
  if ((rc = mdb_env_open(e->env, path, MDB_NOSUBDIR | MDB_NOTLS, 0600))) return rc;
  mdb_reader_check(e->env, &dead); /* readers left by killed processes */
  /* Open (creating) every namespace once; the handles then serve every later transaction. */
  *what = "open namespaces";
  if ((rc = begin_txn(e->env, 0, &txn))) return rc;
  for (int i = 1; i <= n && !rc; i++) {
    lua_rawgeti(L, ns, i); /* a string: check_options saw to it */
    const char *name = lua_tostring(L, -1);
    rc = mdb_dbi_open(txn, name, MDB_CREATE, &e->dbis[e->ndbs]);
    if (!rc && !(e->names[e->ndbs] = strdup(name))) rc = ENOMEM;
    if (!rc) e->ndbs++;
    lua_pop(L, 1);
  }
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  return mdb_txn_commit(txn);
}

/* lmdb.open(path, {map_size=, namespaces={...}}) -> environment. The store is one file (path)
 * plus path-lock, created with mode 0600; every namespace is a named LMDB database. */
static int l_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int n;
  size_t map_size = check_options(L, 2, &n);
  int ns = lua_gettop(L);
  int rc = make_parents(path);
  if (rc) return luaL_error(L, "cannot create the directory of %s: %s", path, strerror(rc));
  Env *e = (Env *)lua_newuserdatauv(L, sizeof(Env), 0);
  memset(e, 0, sizeof *e); /* closed: nothing to release yet */
  luaL_setmetatable(L, ENV_MT);
  const char *what;
  if ((rc = env_acquire(L, e, path, map_size, ns, n, &what))) {
    env_release(e);
    return luaL_error(L, "cannot open store %s: lmdb: %s: %s", path, what, mdb_strerror(rc));
  }
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Environment methods */

/* env:begin(write) -> transaction. Only one write transaction per store at a time (LMDB's
 * writer lock is per process and not reentrant: a second one would wait for ever). */
static int l_begin(lua_State *L) {
  Env *e = check_env(L, 1);
  int write = lua_toboolean(L, 2);
  if (write && e->writer) return luaL_error(L, "a write transaction is already open on this store");
  Txn *t = (Txn *)lua_newuserdatauv(L, sizeof(Txn), 1);
  memset(t, 0, sizeof *t); /* closed until mdb_txn_begin succeeds */
  luaL_setmetatable(L, TXN_MT);
  lua_pushvalue(L, 1); /* the transaction keeps its environment alive */
  lua_setiuservalue(L, -2, 1);
  t->e = e;
  t->write = write;
  MDB_txn *txn;
  int rc = begin_txn(e->env, write ? 0 : MDB_RDONLY, &txn);
  if (rc) return lmdb_error(L, "begin", rc);
  t->txn = txn;
  t->next = e->txns;
  if (e->txns) e->txns->prev = t;
  e->txns = t;
  if (write) e->writer = t;
  return 1;
}

/* env:grow(factor) -> new map size. Only with no transaction open in this process. */
static int l_grow(lua_State *L) {
  Env *e = check_env(L, 1);
  lua_Number factor = luaL_optnumber(L, 2, 2);
  luaL_argcheck(L, factor >= 1 && factor <= 1024, 2, "factor must be 1 to 1024");
  if (e->txns) return luaL_error(L, "cannot grow the store while a transaction is open");
  MDB_envinfo info;
  mdb_env_info(e->env, &info);
  size_t size = (size_t)((lua_Number)info.me_mapsize * factor);
  int rc = mdb_env_set_mapsize(e->env, size);
  if (rc) return lmdb_error(L, "grow", rc);
  lua_pushinteger(L, (lua_Integer)size);
  return 1;
}

/* env:sync(durable) -> nothing. sync(false): commits stop waiting for the disk (a killed
 * process loses nothing, as the data is in the OS's cache; a power cut may lose the last commits);
 * sync(true): back to durable commits, after flushing what is pending. */
static int l_sync(lua_State *L) {
  Env *e = check_env(L, 1);
  int durable = lua_toboolean(L, 2);
  int rc = mdb_env_set_flags(e->env, MDB_NOSYNC, durable ? 0 : 1);
  if (!rc && durable) rc = mdb_env_sync(e->env, 1);
  if (rc) return lmdb_error(L, "sync", rc);
  return 0;
}

/* env:trim() -> nothing. Drops the store's map from this process's resident set: its pages stay
 * in the OS's page cache (the map is a shared, read-only file mapping) and come back on the next
 * access. For bulk journals: every commit writes its pages afresh, so without it resident memory
 * grows with the store's file. Safe at any time (open transactions included). LMDB does not give
 * the map's address (mdb_env_info has it only with MDB_FIXEDMAP): it is found in /proc/self/maps
 * by the file's inode. */
static int l_trim(lua_State *L) {
  Env *e = check_env(L, 1);
  mdb_filehandle_t fd;
  struct stat st;
  if (mdb_env_get_fd(e->env, &fd) || fstat(fd, &st)) return 0;
  FILE *maps = fopen("/proc/self/maps", "r");
  if (!maps) return 0;
  char line[512];
  while (fgets(line, sizeof line, maps)) {
    unsigned long start, end, offset, inode;
    char perms[8];
    unsigned major, minor;
    if (sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &start, &end, perms, &offset, &major, &minor, &inode) == 7 &&
        inode == (unsigned long)st.st_ino && major == major(st.st_dev) && minor == minor(st.st_dev) &&
        perms[3] == 's' && perms[1] == '-')
      (void)madvise((void *)start, end - start, MADV_DONTNEED);
  }
  fclose(maps);
  return 0;
}

/* env:info() -> {map_size=, used=, readers=} */
static int l_info(lua_State *L) {
  Env *e = check_env(L, 1);
  MDB_envinfo info;
  MDB_stat st;
  mdb_env_info(e->env, &info);
  mdb_env_stat(e->env, &st);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)info.me_mapsize);
  lua_setfield(L, -2, "map_size");
  lua_pushinteger(L, (lua_Integer)((info.me_last_pgno + 1) * st.ms_psize));
  lua_setfield(L, -2, "used");
  lua_pushinteger(L, (lua_Integer)info.me_numreaders);
  lua_setfield(L, -2, "readers");
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Transaction methods */

static MDB_dbi check_dbi(lua_State *L, Txn *t, int idx) {
  const char *name = luaL_checkstring(L, idx);
  for (int i = 0; i < t->e->ndbs; i++)
    if (strcmp(t->e->names[i], name) == 0) return t->e->dbis[i];
  luaL_argerror(L, idx, lua_pushfstring(L, "unknown namespace '%s'", name));
  return 0;
}

static MDB_val check_val(lua_State *L, int idx) {
  MDB_val v;
  v.mv_data = (void *)luaL_checklstring(L, idx, &v.mv_size);
  return v;
}

static Txn *check_writer(lua_State *L, int idx) {
  Txn *t = check_txn(L, idx);
  if (!t->write) luaL_error(L, "cannot write in a read transaction");
  return t;
}

/* txn:get(namespace, key) -> value | nil */
static int l_get(lua_State *L) {
  Txn *t = check_txn(L, 1);
  MDB_dbi dbi = check_dbi(L, t, 2);
  MDB_val k = check_val(L, 3), v;
  if (k.mv_size == 0) return luaL_argerror(L, 3, "empty key");
  int rc = mdb_get(t->txn, dbi, &k, &v);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return lmdb_error(L, "get", rc);
  lua_pushlstring(L, (const char *)v.mv_data, v.mv_size);
  return 1;
}

/* txn:put(namespace, key, value [, only_if_absent]) -> true; false if absent was required and the
 * key exists; nil, message, "map_full" when the map is full (the transaction is then closed). */
static int l_put(lua_State *L) {
  Txn *t = check_writer(L, 1);
  MDB_dbi dbi = check_dbi(L, t, 2);
  MDB_val k = check_val(L, 3), v = check_val(L, 4);
  if (k.mv_size == 0 || k.mv_size > 511) return luaL_argerror(L, 3, "key must be 1 to 511 bytes");
  int rc = mdb_put(t->txn, dbi, &k, &v, lua_toboolean(L, 5) ? MDB_NOOVERWRITE : 0);
  if (rc == MDB_KEYEXIST) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc) txn_release(t); /* a failed put leaves the transaction unusable (LMDB marks it broken) */
  return write_result(L, "put", rc);
}

/* txn:del(namespace, key) -> true if it existed */
static int l_del(lua_State *L) {
  Txn *t = check_writer(L, 1);
  MDB_dbi dbi = check_dbi(L, t, 2);
  MDB_val k = check_val(L, 3);
  if (k.mv_size == 0) return luaL_argerror(L, 3, "empty key");
  int rc = mdb_del(t->txn, dbi, &k, NULL);
  if (rc && rc != MDB_NOTFOUND) return lmdb_error(L, "del", rc);
  lua_pushboolean(L, rc == 0);
  return 1;
}

/* txn:next(namespace, prefix, after) -> key, value of the first entry with the prefix whose key is
 * greater than after (or the first with the prefix when after is nil); nil at the end. A cursor is
 * opened and closed per call, with no Lua call in between (every argument is checked before, the
 * results are pushed after: LMDB's data stays valid until the transaction ends), so nothing can
 * raise while it is open and iterators never outlive anything. */
static int l_next(lua_State *L) {
  Txn *t = check_txn(L, 1);
  MDB_dbi dbi = check_dbi(L, t, 2);
  size_t plen, alen = 0;
  const char *prefix = luaL_optlstring(L, 3, "", &plen);
  const char *after = luaL_optlstring(L, 4, NULL, &alen);
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, dbi, &cur);
  if (rc) return lmdb_error(L, "cursor", rc);
  MDB_val k, v;
  if (!after) {
    k.mv_data = (void *)prefix;
    k.mv_size = plen;
    rc = mdb_cursor_get(cur, &k, &v, plen ? MDB_SET_RANGE : MDB_FIRST);
  } else {
    k.mv_data = (void *)after;
    k.mv_size = alen;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size == alen && memcmp(k.mv_data, after, alen) == 0)
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(cur);
  if (rc == MDB_NOTFOUND) return 0;
  if (rc) return lmdb_error(L, "cursor", rc);
  if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0) return 0;
  lua_pushlstring(L, (const char *)k.mv_data, k.mv_size);
  lua_pushlstring(L, (const char *)v.mv_data, v.mv_size);
  return 2;
}

/* txn:commit() -> true, or nil, message, "map_full". The transaction is closed either way. */
static int l_commit(lua_State *L) {
  Txn *t = check_txn(L, 1);
  MDB_txn *txn = t->txn;
  t->txn = NULL;
  txn_unlink(t);
  int rc = mdb_txn_commit(txn); /* frees txn whatever the outcome */
  return write_result(L, "commit", rc);
}

/* ---------------------------------------------------------------------------------------------
 * Functions run inside a transaction: they cannot yield */

#define YIELD_KEY "letta.lmdb.yield" /* registry: coroutine.yield, to know its errors */
static const char yield_marker = 0;

/* The message handler of txn:call: an error raised by coroutine.yield itself (level 1 of the
 * stack) is the yield that the C call below made impossible; it becomes a marker that l_call
 * turns into the caller's message. Any other error goes on as it is. */
static int call_handler(lua_State *L) {
  lua_Debug ar;
  if (lua_getstack(L, 1, &ar) && lua_getinfo(L, "f", &ar)) {
    lua_getfield(L, LUA_REGISTRYINDEX, YIELD_KEY);
    int from_yield = !lua_isnil(L, -1) && lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    if (from_yield) {
      lua_pushlightuserdata(L, (void *)&yield_marker);
      return 1;
    }
  }
  lua_settop(L, 1);
  return 1;
}

/* txn:call(fn, arg, message) -> fn(arg)'s results. fn runs in a plain C call (no continuation),
 * so it cannot yield out of it: a coroutine.yield (a task waiting on the network, a sleep) would
 * otherwise leave the transaction open, and LMDB's write lock held, until the task came back.
 * Such a yield raises message at once instead; fn's own coroutines yield as they like. No
 * coroutine per call: a lookup costs a plain pcall more. */
static int l_call(lua_State *L) {
  check_txn(L, 1);
  luaL_checktype(L, 2, LUA_TFUNCTION);
  luaL_checkstring(L, 4);
  lua_settop(L, 4);
  lua_pushcfunction(L, call_handler); /* 5 */
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 3);
  if (lua_pcall(L, 1, LUA_MULTRET, 5) != LUA_OK) {
    if (lua_touserdata(L, -1) == (void *)&yield_marker) lua_pushvalue(L, 4);
    return lua_error(L);
  }
  return lua_gettop(L) - 5;
}

static int l_txn_active(lua_State *L) {
  Txn *t = (Txn *)luaL_checkudata(L, 1, TXN_MT);
  lua_pushboolean(L, t->txn != NULL);
  return 1;
}

int luaopen_letta_lmdb(lua_State *L) {
  static const luaL_Reg env_methods[] = {
      {"begin", l_begin}, {"grow", l_grow}, {"info", l_info}, {"sync", l_sync},
      {"trim", l_trim},   {"close", l_env_close}, {NULL, NULL}};
  static const luaL_Reg txn_methods[] = {
      {"get", l_get},       {"put", l_put},         {"del", l_del},         {"next", l_next},
      {"commit", l_commit}, {"abort", l_txn_close}, {"close", l_txn_close}, {"active", l_txn_active},
      {"call", l_call},     {NULL, NULL}};
  static const luaL_Reg fns[] = {{"open", l_open}, {NULL, NULL}};
  lh_class(L, ENV_MT, env_methods, l_env_close, l_env_close, l_env_tostring);
  lh_class(L, TXN_MT, txn_methods, l_txn_close, l_txn_close, l_txn_tostring);
  /* the coroutine library's yield, as loaded (none: then a yield keeps Lua's own message) */
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, LUA_COLIBNAME) == LUA_TTABLE) lua_getfield(L, -1, "yield");
  else lua_pushnil(L);
  lua_setfield(L, LUA_REGISTRYINDEX, YIELD_KEY);
  lua_pop(L, 2);
  luaL_newlib(L, fns);
  return 1;
}
