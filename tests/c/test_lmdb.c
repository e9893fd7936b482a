/* Unit tests of the LMDB binding (src/lh_lmdb.c, module letta.lmdb): handles kept as liolib keeps
 * files, options errors that name the field, a full map returned rather than raised, and nothing
 * leaked on any failure path (the ASan build, bin/asan/lettash_tests, checks that part). Each test
 * drives the module from a little Lua in a fresh state and a fresh temporary directory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "lauxlib.h"
#include "lh_lmdb.h"
#include "lmdb.h"
#include "lualib.h"

static char dir[64];

/* A state with the module as global `lmdb` and the temporary directory as global `dir`. */
static lua_State *open_state(void) {
  snprintf(dir, sizeof dir, "/tmp/lh_test_lmdb.XXXXXX");
  if (!mkdtemp(dir)) return NULL;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_requiref(L, "letta.lmdb", luaopen_letta_lmdb, 0);
  lua_setglobal(L, "lmdb");
  lua_pushstring(L, dir);
  lua_setglobal(L, "dir");
  return L;
}

static void close_state(lua_State *L) {
  char cmd[128];
  lua_close(L);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
}

/* Runs code; returns its result converted to a string, or its error message without the
 * position luaL_error puts first. */
static const char *run(lua_State *L, const char *code) {
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT); /* closes what the last run left open: LMDB wants one handle a file */
  if (luaL_loadstring(L, code) == LUA_OK && lua_pcall(L, 0, 1, 0) == LUA_OK)
    return luaL_tolstring(L, -1, NULL);
  const char *msg = lua_tostring(L, -1), *pos = msg ? strstr(msg, "\"]:1: ") : NULL;
  return pos ? pos + 6 : msg;
}

#define OPEN "local env = lmdb.open(dir .. '/store', {namespaces = {'a', 'b'}}) "

void test_lmdb_closed_handles_raise(void) {
  lua_State *L = open_state();
  CHECK_STR(run(L, OPEN "env:close() env:close() return env:begin(false)"),
            "attempt to use a closed LMDB environment");
  CHECK_STR(run(L, OPEN "local t = env:begin(true) t:abort() t:abort() return t:get('a', 'k')"),
            "attempt to use a closed LMDB transaction");
  CHECK_STR(run(L, OPEN "local t = env:begin(true) assert(t:commit() == true) return t:put('a', 'k', 'v')"),
            "attempt to use a closed LMDB transaction");
  /* closing the environment closes its transactions */
  CHECK_STR(run(L, OPEN "local t = env:begin(false) env:close() return t:next('a')"),
            "attempt to use a closed LMDB transaction");
  CHECK_STR(run(L, OPEN "local t = env:begin(false) env:close() return tostring(t) .. ', ' .. tostring(env)"),
            "LMDB transaction (closed), LMDB environment (closed)");
  CHECK_STR(run(L, OPEN "do local t <close> = env:begin(true) t:put('a', 'k', 'v') end "
                        "local t = env:begin(true) local r = t:get('a', 'k') t:commit() env:close() return tostring(r)"),
            "nil"); /* closed uncommitted: aborted, and the writer lock was free again */
  close_state(L);
}

void test_lmdb_open_errors_name_the_field(void) {
  /* (the nil and string namespaces crashed the old binding: it walked them with lua_rawgeti) */
  static const struct { const char *options, *error; } cases[] = {
      {"{map_size = 'big', namespaces = {}}", "'map_size' to 'open' (number expected, got string)"},
      {"{map_size = 1.5, namespaces = {}}", "'map_size' to 'open' (number has no integer representation)"},
      {"{map_size = -1, namespaces = {}}", "'map_size' to 'open' (must be positive)"},
      {"{}", "'namespaces' to 'open' (table expected, got nil)"},
      {"{namespaces = 'users'}", "'namespaces' to 'open' (table expected, got string)"},
      {"{namespaces = {'a', 2}}", "'namespaces[2]' to 'open' (string expected, got number)"},
      {"{namespaces = setmetatable({}, {__len = function() return 33 end})}",
       "'namespaces' to 'open' (more than 32 names)"},
  };
  lua_State *L = open_state();
  char code[256], want[256];
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    snprintf(code, sizeof code, "return lmdb.open(dir .. '/s', %s)", cases[i].options);
    snprintf(want, sizeof want, "bad field %s", cases[i].error);
    CHECK_STR(run(L, code), want);
  }
  CHECK(access(lua_pushfstring(L, "%s/s", dir), F_OK) != 0); /* nothing was created */
  close_state(L);
}

/* Makes dir/bad an LMDB file whose main database holds a plain key "plain": opening it with a
 * namespace of that name fails (MDB_INCOMPATIBLE) after the earlier namespaces were opened. */
static int make_incompatible_store(void) {
  char path[96];
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi dbi;
  MDB_val k = {5, "plain"}, v = {1, "x"};
  snprintf(path, sizeof path, "%s/bad", dir);
  if (mdb_env_create(&env)) return 0;
  int ok = mdb_env_open(env, path, MDB_NOSUBDIR, 0600) == 0 && mdb_txn_begin(env, NULL, 0, &txn) == 0;
  if (ok) {
    ok = mdb_dbi_open(txn, NULL, 0, &dbi) == 0 && mdb_put(txn, dbi, &k, &v, 0) == 0;
    ok = mdb_txn_commit(txn) == 0 && ok;
  }
  mdb_env_close(env);
  return ok;
}

void test_lmdb_open_failing_half_way_releases_everything(void) {
  lua_State *L = open_state();
  CHECK(make_incompatible_store());
  const char *msg = run(L, "return lmdb.open(dir .. '/bad', {namespaces = {'a', 'b', 'plain'}})");
  CHECK(msg && strstr(msg, "lmdb: open namespaces: MDB_INCOMPATIBLE") != NULL);
  /* released at once, not at the next collection: the same file opens again, cleanly */
  CHECK_STR(run(L, "local e = lmdb.open(dir .. '/bad', {namespaces = {'a'}}) e:close() return 'ok'"), "ok");
  /* a directory where the file should be: mdb_env_open fails after mdb_env_create */
  CHECK_STR(run(L, "os.execute('mkdir ' .. dir .. '/d') "
                   "local ok, e = pcall(lmdb.open, dir .. '/d', {namespaces = {}}) return ok"),
            "false");
  /* a map too large to map */
  CHECK_STR(run(L, "local ok, e = pcall(lmdb.open, dir .. '/huge', {map_size = 1 << 62, namespaces = {'a'}}) return ok"),
            "false");
  close_state(L);
}

void test_lmdb_map_full_is_returned_not_raised(void) {
  lua_State *L = open_state();
  CHECK_STR(run(L, "local env = lmdb.open(dir .. '/full', {map_size = 64 * 1024, namespaces = {'a'}}) "
                   "local t = env:begin(true) "
                   "local ok, msg, code = t:put('a', 'k', string.rep('x', 256 * 1024)) "
                   "assert(t:active() == false) " /* LMDB broke the transaction: it was aborted */
                   "local t2 = env:begin(true) " /* and the writer lock released */
                   "t2:abort() env:close() "
                   "return tostring(ok) .. '|' .. msg .. '|' .. code"),
            "nil|lmdb: put: MDB_MAP_FULL: Environment mapsize limit reached|map_full");
  CHECK_STR(run(L, OPEN "local t = env:begin(true) return tostring(t:put('a', 'k', 'v')) .. tostring(t:put('a', 'k', 'w', true)) .. tostring(t:commit())"),
            "truefalsetrue");
  close_state(L);
}

void test_lmdb_next_checks_arguments_before_opening_a_cursor(void) {
  lua_State *L = open_state();
  /* the old binding opened the cursor first and leaked it when `after` was not a string */
  const char *msg = run(L, OPEN "local t <close> = env:begin(false) return t:next('a', '', {})");
  CHECK(msg && strstr(msg, "bad argument #3 to 'next' (string expected, got table)") != NULL);
  CHECK_STR(run(L, OPEN "local w = env:begin(true) for _, k in ipairs{'p:1', 'p:2', 'q'} do w:put('b', k, k) end w:commit() "
                        "local t <close> = env:begin(false) local out, k = {} "
                        "repeat k = t:next('b', 'p:', k) out[#out + 1] = k until not k "
                        "return table.concat(out, ',')"),
            "p:1,p:2");
  close_state(L);
}
