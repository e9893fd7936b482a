/* letta.lmdb: the LMDB binding under letta.store. Mechanical and safe, after py-lmdb: a transaction
 * holds its environment alive; closing the environment aborts its transactions; a transaction
 * dropped or closed without commit is aborted, so LMDB's single writer lock is never left held.
 * Friendly things (records, namespaces, map growth, update(fn)) are in lua/letta/store.lua. */
#include "lh_store.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "lauxlib.h"
#include "lh_util.h"
#include "lmdb.h"

#define ENV_MT "letta.Store"
#define TXN_MT "letta.Store.Transaction"
#define MAX_DBS 32

typedef struct Txn Txn;

typedef struct {
  MDB_env *env;
  int closed;
  Txn *txns;   /* open transactions, aborted by close */
  Txn *writer; /* the open write transaction, if any */
  int ndbs;
  char *names[MAX_DBS];
  MDB_dbi dbis[MAX_DBS];
} Env;

struct Txn {
  Env *e;
  MDB_txn *txn; /* NULL once committed or aborted */
  int write;
  Txn *prev, *next;
};

/* Raises "lmdb: <what>: <strerror>" with the LMDB code name first for MAP_FULL, so the Lua side
 * can recognise it. */
static int lmdb_error(lua_State *L, const char *what, int rc) {
  if (rc == MDB_MAP_FULL) return luaL_error(L, "MDB_MAP_FULL: %s: %s", what, mdb_strerror(rc));
  return luaL_error(L, "lmdb: %s: %s", what, mdb_strerror(rc));
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
  if (e->closed) luaL_error(L, "attempt to use a closed store");
  return e;
}

static Txn *check_txn(lua_State *L, int idx) {
  Txn *t = (Txn *)luaL_checkudata(L, idx, TXN_MT);
  if (!t->txn) luaL_error(L, "attempt to use a finished transaction");
  return t;
}

static void txn_unlink(Txn *t) {
  Env *e = t->e;
  if (t->prev) t->prev->next = t->next;
  else if (e->txns == t) e->txns = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
  if (e->writer == t) e->writer = NULL;
}

static void txn_abort(Txn *t) {
  if (!t->txn) return;
  mdb_txn_abort(t->txn);
  t->txn = NULL;
  txn_unlink(t);
}

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

/* lmdb.open(path, {map_size=, namespaces={...}}) -> store. The store is one file (path) plus
 * path-lock, created with mode 0600; every namespace is a named LMDB database. */
static int l_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_getfield(L, 2, "map_size");
  size_t map_size = (size_t)luaL_optinteger(L, -1, 1 << 20);
  lua_pop(L, 1);
  Env *e = (Env *)lua_newuserdatauv(L, sizeof(Env), 0);
  memset(e, 0, sizeof *e);
  e->closed = 1; /* created closed: nothing to release until opened */
  luaL_setmetatable(L, ENV_MT);
  int rc = make_parents(path);
  if (rc) return luaL_error(L, "cannot create the directory of %s: %s", path, strerror(rc));
  if ((rc = mdb_env_create(&e->env))) return lmdb_error(L, "create", rc);
  mdb_env_set_maxdbs(e->env, MAX_DBS);
  mdb_env_set_maxreaders(e->env, 126);
  mdb_env_set_mapsize(e->env, map_size);
  /* NOTLS: read transactions belong to Lua objects, not threads (coroutines share one thread). */
  rc = mdb_env_open(e->env, path, MDB_NOSUBDIR | MDB_NOTLS, 0600);
  if (rc) {
    mdb_env_close(e->env);
    e->env = NULL;
    return luaL_error(L, "cannot open store %s: %s", path, mdb_strerror(rc));
  }
  e->closed = 0;
  int dead = 0;
  mdb_reader_check(e->env, &dead); /* readers left by killed processes */
  /* Open (creating) every namespace once; the handles then serve every later transaction. */
  MDB_txn *txn;
  if ((rc = begin_txn(e->env, 0, &txn))) return lmdb_error(L, "begin", rc);
  lua_getfield(L, 2, "namespaces");
  for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING && e->ndbs < MAX_DBS; i++) {
    const char *name = lua_tostring(L, -1);
    if ((rc = mdb_dbi_open(txn, name, MDB_CREATE, &e->dbis[e->ndbs])) ||
        !(e->names[e->ndbs] = strdup(name))) {
      mdb_txn_abort(txn);
      return rc ? lmdb_error(L, "open namespace", rc) : luaL_error(L, "out of memory");
    }
    e->ndbs++;
    lua_pop(L, 1);
  }
  lua_pop(L, 2);
  if ((rc = mdb_txn_commit(txn))) return lmdb_error(L, "commit", rc);
  return 1;
}

static int l_env_close(lua_State *L) {
  Env *e = (Env *)luaL_checkudata(L, 1, ENV_MT);
  if (e->closed) return 0;
  while (e->txns) txn_abort(e->txns);
  for (int i = 0; i < e->ndbs; i++) free(e->names[i]);
  e->ndbs = 0;
  mdb_env_close(e->env);
  e->env = NULL;
  e->closed = 1;
  return 0;
}

/* store:begin(write) -> transaction. Only one write transaction per store at a time (LMDB's
 * writer lock is per process and not reentrant: a second one would wait for ever). */
static int l_begin(lua_State *L) {
  Env *e = check_env(L, 1);
  int write = lua_toboolean(L, 2);
  if (write && e->writer) return luaL_error(L, "a write transaction is already open on this store");
  Txn *t = (Txn *)lua_newuserdatauv(L, sizeof(Txn), 1);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, TXN_MT);
  lua_pushvalue(L, 1); /* the transaction keeps its store alive */
  lua_setiuservalue(L, -2, 1);
  t->e = e;
  t->write = write;
  int rc = begin_txn(e->env, write ? 0 : MDB_RDONLY, &t->txn);
  if (rc) {
    t->txn = NULL;
    return lmdb_error(L, "begin", rc);
  }
  t->next = e->txns;
  if (e->txns) e->txns->prev = t;
  e->txns = t;
  if (write) e->writer = t;
  return 1;
}

/* store:grow(factor) -> new map size. Only with no transaction open in this process. */
static int l_grow(lua_State *L) {
  Env *e = check_env(L, 1);
  lua_Number factor = luaL_optnumber(L, 2, 2);
  if (e->txns) return luaL_error(L, "cannot grow the store while a transaction is open");
  MDB_envinfo info;
  mdb_env_info(e->env, &info);
  size_t size = (size_t)((lua_Number)info.me_mapsize * factor);
  int rc = mdb_env_set_mapsize(e->env, size);
  if (rc) return lmdb_error(L, "grow", rc);
  lua_pushinteger(L, (lua_Integer)size);
  return 1;
}

/* store:sync(durable) -> nothing. sync(false): commits stop waiting for the disk (a killed
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

/* store:trim() -> nothing. Drops the store's map from this process's resident set: its pages stay
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

/* store:info() -> {map_size=, used=, readers=} */
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

/* txn:put(namespace, key, value [, only_if_absent]) -> true, or false if absent was required */
static int l_put(lua_State *L) {
  Txn *t = check_txn(L, 1);
  if (!t->write) return luaL_error(L, "cannot write in a read transaction");
  MDB_dbi dbi = check_dbi(L, t, 2);
  MDB_val k = check_val(L, 3), v = check_val(L, 4);
  if (k.mv_size == 0 || k.mv_size > 511) return luaL_argerror(L, 3, "key must be 1 to 511 bytes");
  int rc = mdb_put(t->txn, dbi, &k, &v, lua_toboolean(L, 5) ? MDB_NOOVERWRITE : 0);
  if (rc == MDB_KEYEXIST) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc) {
    /* A failed put leaves the transaction unusable (LMDB marks it broken): end it now. */
    txn_abort(t);
    return lmdb_error(L, "put", rc);
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* txn:del(namespace, key) -> true if it existed */
static int l_del(lua_State *L) {
  Txn *t = check_txn(L, 1);
  if (!t->write) return luaL_error(L, "cannot write in a read transaction");
  MDB_dbi dbi = check_dbi(L, t, 2);
  MDB_val k = check_val(L, 3);
  if (k.mv_size == 0) return luaL_argerror(L, 3, "empty key");
  int rc = mdb_del(t->txn, dbi, &k, NULL);
  if (rc == MDB_NOTFOUND) {
    lua_pushboolean(L, 0);
    return 1;
  }
  if (rc) return lmdb_error(L, "del", rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* txn:next(namespace, prefix, after) -> key, value of the first entry with the prefix whose key is
 * greater than after (or the first with the prefix when after is nil); nil at the end. A cursor is
 * opened and closed per call, so iterators never outlive anything. */
static int l_next(lua_State *L) {
  Txn *t = check_txn(L, 1);
  MDB_dbi dbi = check_dbi(L, t, 2);
  size_t plen;
  const char *prefix = luaL_optlstring(L, 3, "", &plen);
  MDB_cursor *cur;
  int rc = mdb_cursor_open(t->txn, dbi, &cur);
  if (rc) return lmdb_error(L, "cursor", rc);
  MDB_val k, v;
  if (lua_isnoneornil(L, 4)) {
    k.mv_data = (void *)prefix;
    k.mv_size = plen;
    rc = plen ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
  } else {
    size_t alen;
    const char *after = luaL_checklstring(L, 4, &alen);
    k.mv_data = (void *)after;
    k.mv_size = alen;
    rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0 && k.mv_size == alen && memcmp(k.mv_data, after, alen) == 0)
      rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
  }
  int found = rc == 0 && k.mv_size >= plen && memcmp(k.mv_data, prefix, plen) == 0;
  if (found) {
    lua_pushlstring(L, (const char *)k.mv_data, k.mv_size);
    lua_pushlstring(L, (const char *)v.mv_data, v.mv_size);
  }
  mdb_cursor_close(cur);
  if (rc && rc != MDB_NOTFOUND) return lmdb_error(L, "cursor", rc);
  return found ? 2 : 0;
}

static int l_commit(lua_State *L) {
  Txn *t = check_txn(L, 1);
  MDB_txn *txn = t->txn;
  t->txn = NULL;
  txn_unlink(t);
  int rc = mdb_txn_commit(txn); /* frees txn whatever the outcome */
  if (rc) return lmdb_error(L, "commit", rc);
  return 0;
}

/* Aborts unless already finished. Idempotent; also __gc and __close. */
static int l_abort(lua_State *L) {
  txn_abort((Txn *)luaL_checkudata(L, 1, TXN_MT));
  return 0;
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
      {"get", l_get},       {"put", l_put},     {"del", l_del},     {"next", l_next},
      {"commit", l_commit}, {"abort", l_abort}, {"close", l_abort}, {"active", l_txn_active},
      {NULL, NULL}};
  static const luaL_Reg fns[] = {{"open", l_open}, {NULL, NULL}};
  lh_class(L, ENV_MT, env_methods, l_env_close, l_env_close, NULL);
  lh_class(L, TXN_MT, txn_methods, l_abort, l_abort, NULL);
  luaL_newlib(L, fns);
  return 1;
}
