/* The embedding API (lettash.h): a runtime a host creates, feeds scripts and steps once per frame,
 * with an optional memory cap, an instruction budget that pcall cannot swallow, and a sandbox for
 * scripts the host did not write. Every entry point runs Lua in protected mode. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lettash.h"
#include "lh_http.h"
#include "lualib.h"

#define SANDBOX_ENV "lettash.sandbox_env"
#define HOOK_EVERY 1000 /* instructions between budget checks */

struct lh_runtime {
  lua_State *L;
  lua_Alloc alloc;
  void *alloc_ud;
  size_t memory, memory_limit;
  long budget, used; /* instructions per host call; used in the current call */
  int exhausted;
  int sandbox;
  char *error;
  char *result;
};

/* ---------------------------------------------------------------------------------------------
 * Memory */

static void *default_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud, (void)osize;
  if (nsize == 0) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, nsize);
}

/* Counts what the Lua state holds and refuses what would pass the limit (Lua then raises a
 * memory error, which a script may catch, but every later allocation fails the same way). */
static void *limited_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  lh_runtime *rt = (lh_runtime *)ud;
  size_t old = ptr ? osize : 0;
  if (nsize == 0) {
    rt->alloc(rt->alloc_ud, ptr, osize, 0);
    rt->memory -= old;
    return NULL;
  }
  if (rt->memory_limit && nsize > old && rt->memory + (nsize - old) > rt->memory_limit) return NULL;
  void *p = rt->alloc(rt->alloc_ud, ptr, osize, nsize);
  if (p) rt->memory = rt->memory - old + nsize;
  return p;
}

/* ---------------------------------------------------------------------------------------------
 * Instruction budget. Once spent, the hook fires on every instruction and raises again, so a
 * pcall that catches the error only returns to code that fails at its next instruction. */

static lh_runtime *runtime_of(lua_State *L) { return *(lh_runtime **)lua_getextraspace(L); }

static void budget_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lh_runtime *rt = runtime_of(L);
  rt->used += lua_gethookcount(L);
  if (rt->used > rt->budget) {
    rt->exhausted = 1;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    luaL_error(L, "instruction budget exceeded (%d instructions per call)", (int)rt->budget);
  }
}

/* budget_spent() -> whether this call's budget is spent: the sandbox's xpcall asks before running
 * a script's message handler, which Lua runs with hooks off after an error raised by a hook. */
static int budget_spent(lua_State *L) {
  lua_pushboolean(L, runtime_of(L)->exhausted);
  return 1;
}

static void begin_call(lh_runtime *rt) {
  free(rt->error);
  rt->error = NULL;
  rt->used = 0;
  rt->exhausted = 0;
  if (rt->budget > 0) lua_sethook(rt->L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
}

static void set_error(lh_runtime *rt, const char *msg) {
  free(rt->error);
  rt->error = strdup(msg ? msg : "(error object is not a string)");
}


/* Calls the function below nargs arguments; keeps the error message; maps the status. */
static int protected_call(lh_runtime *rt, int nargs, int nres) {
  lua_State *L = rt->L;
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, lh_traceback);
  lua_insert(L, base);
  int status = lua_pcall(L, nargs, nres, base);
  lua_remove(L, base);
  if (rt->budget > 0) lua_sethook(L, NULL, 0, 0);
  if (status == LUA_OK) return LH_OK;
  set_error(rt, lua_tostring(L, -1));
  lua_pop(L, 1);
  if (rt->exhausted) return LH_ERR_LIMIT;
  if (status == LUA_ERRMEM) return LH_ERR_MEMORY;
  return LH_ERR_RUN;
}

/* ---------------------------------------------------------------------------------------------
 * Creation */

static const lh_config *config_of(lua_State *L) { return (const lh_config *)lua_touserdata(L, 1); }

/* Runs protected: libraries, the letta module, and for a sandbox its environment and client. */
static int setup(lua_State *L) {
  const lh_config *cfg = config_of(L);
  lh_openlibs(L, 0);
  if (cfg && cfg->sandbox) {
    lua_getglobal(L, "require");
    lua_pushliteral(L, "letta.sandbox");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "env");
    lua_createtable(L, 0, 2);
    if (cfg->base_url) {
      lua_pushstring(L, cfg->base_url);
      lua_setfield(L, -2, "base_url");
    }
    lua_pushstring(L, cfg->token ? cfg->token : ""); /* handed to C at once, then unreachable */
    lua_setfield(L, -2, "token");
    lua_pushcfunction(L, budget_spent);
    lua_call(L, 2, 1);
    lua_setfield(L, LUA_REGISTRYINDEX, SANDBOX_ENV);
    lua_gc(L, LUA_GCCOLLECT);
  } else if (cfg && (cfg->base_url || cfg->token)) { /* defaults of letta.client() */
    lua_createtable(L, 0, 2);
    lua_pushstring(L, cfg->base_url);
    lua_setfield(L, -2, "base_url");
    lua_pushstring(L, cfg->token);
    lua_setfield(L, -2, "token");
    lua_setfield(L, LUA_REGISTRYINDEX, "lettash.defaults");
  }
  return 0;
}

lh_runtime *lh_new(const lh_config *cfg) {
  lh_runtime *rt = (lh_runtime *)calloc(1, sizeof *rt);
  if (!rt) return NULL;
  rt->alloc = cfg && cfg->alloc ? cfg->alloc : default_alloc;
  rt->alloc_ud = cfg ? cfg->alloc_ud : NULL;
  rt->memory_limit = cfg ? cfg->memory_limit : 0;
  rt->sandbox = cfg && cfg->sandbox;
  rt->budget = cfg && cfg->instruction_limit > 0 ? cfg->instruction_limit : (rt->sandbox ? 100000000L : 0);
  rt->L = lua_newstate(limited_alloc, rt);
  if (!rt->L) {
    free(rt);
    return NULL;
  }
  *(lh_runtime **)lua_getextraspace(rt->L) = rt;
  lua_pushcfunction(rt->L, setup);
  lua_pushlightuserdata(rt->L, (void *)cfg);
  long budget = rt->budget;
  rt->budget = 0; /* set-up is ours: no budget */
  int rc = protected_call(rt, 1, 0);
  rt->budget = budget;
  if (rc != LH_OK) {
    lh_close(rt);
    return NULL;
  }
  return rt;
}

void lh_close(lh_runtime *rt) {
  if (!rt) return;
  if (rt->L) lua_close(rt->L);
  free(rt->error);
  free(rt->result);
  free(rt);
}

/* ---------------------------------------------------------------------------------------------
 * Running */

/* Gives a loaded chunk the sandbox's environment (its first upvalue is _ENV). */
static void use_env(lh_runtime *rt) {
  if (!rt->sandbox) return;
  lua_getfield(rt->L, LUA_REGISTRYINDEX, SANDBOX_ENV);
  lua_setupvalue(rt->L, -2, 1);
}

static int load_status(lh_runtime *rt, int status) {
  if (status == LUA_OK) return LH_OK;
  set_error(rt, lua_tostring(rt->L, -1));
  lua_pop(rt->L, 1);
  if (status == LUA_ERRSYNTAX) return LH_ERR_SYNTAX;
  if (status == LUA_ERRMEM) return LH_ERR_MEMORY;
  return LH_ERR_FILE;
}

int lh_run_string(lh_runtime *rt, const char *code, const char *chunkname) {
  if (!rt || !code) return LH_ERR_ARG;
  begin_call(rt);
  int rc = load_status(rt, luaL_loadbufferx(rt->L, code, strlen(code), chunkname ? chunkname : "=script", "t"));
  if (rc != LH_OK) return rc;
  use_env(rt);
  return protected_call(rt, 0, 0);
}

int lh_run_file(lh_runtime *rt, const char *path) {
  if (!rt || !path) return LH_ERR_ARG;
  begin_call(rt);
  int rc = load_status(rt, luaL_loadfilex(rt->L, path, "t"));
  if (rc != LH_OK) return rc;
  use_env(rt);
  return protected_call(rt, 0, 0);
}

int lh_call(lh_runtime *rt, const char *name, const char *arg) {
  if (!rt || !name) return LH_ERR_ARG;
  lua_State *L = rt->L;
  begin_call(rt);
  free(rt->result);
  rt->result = NULL;
  if (rt->sandbox) { /* sandboxed scripts cannot make globals: they export through `exports` */
    lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_ENV);
    lua_getfield(L, -1, "exports");
    lua_getfield(L, -1, name);
    lua_replace(L, -3);
    lua_pop(L, 1);
  } else {
    lua_getglobal(L, name);
  }
  if (!lua_isfunction(L, -1)) {
    lua_pop(L, 1);
    char msg[300];
    snprintf(msg, sizeof msg, "no function '%s'%s", name, rt->sandbox ? " in exports" : "");
    set_error(rt, msg);
    return LH_ERR_ARG;
  }
  int nargs = 0;
  if (arg) {
    lua_pushstring(L, arg);
    nargs = 1;
  }
  int rc = protected_call(rt, nargs, 1);
  if (rc == LH_OK) {
    if (!lua_isnil(L, -1)) {
      const char *s = luaL_tolstring(L, -1, NULL);
      rt->result = strdup(s);
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  return rc;
}

const char *lh_result(lh_runtime *rt) { return rt ? rt->result : NULL; }

int lh_step(lh_runtime *rt, int timeout_ms) {
  if (!rt) return -LH_ERR_ARG;
  lua_State *L = rt->L;
  begin_call(rt);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "letta.loop") != LUA_TTABLE) { /* no task was ever started */
    lua_pop(L, 2);
    return 0;
  }
  lua_getfield(L, -1, "step");
  lua_replace(L, -3);
  lua_pop(L, 1);
  lua_pushinteger(L, timeout_ms < 0 ? 0 : timeout_ms);
  int rc = protected_call(rt, 1, 1);
  if (rc != LH_OK) return -rc;
  int live = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  return live;
}

int lh_pollfds(lh_runtime *rt, struct pollfd *fds, int max, int *timeout_ms) {
  if (!rt) return 0;
  return lh_http_pollfds(rt->L, fds, max, timeout_ms);
}

const char *lh_error(lh_runtime *rt) { return rt && rt->error ? rt->error : ""; }

lua_State *lh_state(lh_runtime *rt) { return rt ? rt->L : NULL; }

/* ---------------------------------------------------------------------------------------------
 * bin/letta.so: require "letta" from stock lua5.4 */

int luaopen_letta(lua_State *L) {
  lh_preload(L, 0);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "letta");
  lua_call(L, 1, 1);
  return 1;
}
