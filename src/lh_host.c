/* The embedding API (lettash.h): a runtime a host creates, feeds scripts and steps once per frame,
 * with an optional memory cap, an instruction budget that pcall cannot swallow, and a sandbox for
 * scripts the host did not write. Every entry point runs its whole body, conversions of results and
 * errors to text included, inside one protected call (enter()); a panic handler brings back to the
 * entry point whatever error still escapes, so no script can abort its host. */
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lauxlib.h"
#include "lettash.h"
#include "lh_http.h"
#include "lualib.h"

#define SANDBOX_ENV "lettash.sandbox_env"
#define HOOK_EVERY 1000 /* instructions between budget checks */

static const char BROKEN[] = "the runtime is unusable after a Lua panic";

struct lh_runtime {
  lua_State *L;
  lua_Alloc alloc;
  void *alloc_ud;
  size_t memory, memory_limit;
  long budget, used; /* instructions per host call; used in the current call */
  int exhausted;
  int sandbox;
  int running;        /* an entry point is on the C stack: the host's functions may not enter again */
  int broken;         /* a panic left the Lua state mid-call: only lh_close may touch it */
  jmp_buf panic_jump; /* set by the running entry point: where on_panic goes back to */
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

/* ---------------------------------------------------------------------------------------------
 * Protected entry. Each entry point describes its work as a `call` (usually the first member of a
 * struct holding its arguments) and hands it to enter(). */

typedef struct call {
  lua_CFunction body; /* runs protected, the call as its light userdata argument */
  lh_runtime *rt;
  int rc; /* LH_OK, or a failure the body found by itself: then it returns the message */
} call;

/* rt->error = the formatted message (NULL fmt: none). Only C here: it may run after a panic. */
static void set_error(lh_runtime *rt, const char *fmt, ...) {
  free(rt->error);
  rt->error = NULL;
  if (!fmt) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || !(rt->error = (char *)malloc((size_t)n + 1))) return;
  va_start(ap, fmt);
  vsnprintf(rt->error, (size_t)n + 1, fmt, ap);
  va_end(ap);
}

/* lua_atpanic: an error raised outside any protected call. Inside an entry point, go back to it
 * (Lua was left mid-call, so the runtime is marked broken). Outside one (the host's own lua_*
 * calls through lh_state) there is nowhere to go: say why before Lua aborts, as lauxlib does. */
static int on_panic(lua_State *L) {
  lh_runtime *rt = runtime_of(L);
  const char *msg = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "error object is not a string";
  if (rt && rt->running) {
    rt->broken = 1;
    set_error(rt, "Lua panic (unprotected error: %s): %s", msg, BROKEN);
    longjmp(rt->panic_jump, 1);
  }
  fprintf(stderr, "lettash: PANIC: unprotected error in call to Lua API (%s)\n", msg);
  return 0; /* Lua aborts */
}

/* The outer protected function: runs the body under the message handler, then turns its error
 * into a string. That conversion runs metamethods of the error object (and may run out of memory),
 * so it happens in here too; what still fails leaves lua_pcall with Lua's preallocated "not enough
 * memory". Returns the message (a string) when the call failed, nothing when it succeeded. */
static int guarded(lua_State *L) {
  call *c = (call *)lua_touserdata(L, 1);
  lua_pushcfunction(L, lh_traceback);
  lua_pushcfunction(L, c->body);
  lua_pushlightuserdata(L, c);
  int status = lua_pcall(L, 1, 1, 2);
  if (status == LUA_OK && c->rc == LH_OK) return 0;
  if (status != LUA_OK) c->rc = status == LUA_ERRMEM ? LH_ERR_MEMORY : LH_ERR_RUN;
  if (status == LUA_ERRERR)
    lua_pushliteral(L, "error in error handling (out of memory or C stack while reporting an error)");
  else if (lua_isstring(L, -1))
    lua_tostring(L, -1); /* a number becomes a string here, where allocating may fail */
  else
    lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, -1));
  return 1;
}

/* The one way into Lua for every entry point (api names it in errors): refuses a broken runtime
 * and reentry from a host function the script called, starts the instruction budget, runs
 * c->body protected, keeps the message of a failure in rt->error. Returns LH_OK or LH_ERR_*. */
static int enter(lh_runtime *rt, const char *api, call *c) {
  if (rt->broken) {
    set_error(rt, "%s", BROKEN);
    return LH_ERR_RUN;
  }
  if (rt->running) { /* rt->L is mid-call below us: pushing on it would corrupt its stack */
    set_error(rt, "%s called from inside the runtime", api);
    return LH_ERR_ARG;
  }
  lua_State *L = rt->L;
  int top = lua_gettop(L);
  c->rt = rt;
  c->rc = LH_OK;
  set_error(rt, NULL);
  if (!lua_checkstack(L, LUA_MINSTACK)) { /* returns 0 rather than raising */
    set_error(rt, "not enough memory");
    return LH_ERR_MEMORY;
  }
  rt->used = 0;
  rt->exhausted = 0;
  rt->running = 1;
  if (setjmp(rt->panic_jump) == 0) {
    if (rt->budget > 0) lua_sethook(L, budget_hook, LUA_MASKCOUNT, HOOK_EVERY);
    lua_pushcfunction(L, guarded);
    lua_pushlightuserdata(L, c);
    int status = lua_pcall(L, 1, 1, 0);
    if (status != LUA_OK) c->rc = status == LUA_ERRMEM ? LH_ERR_MEMORY : LH_ERR_RUN;
    if (c->rc != LH_OK) {
      if (rt->exhausted) c->rc = LH_ERR_LIMIT;
      set_error(rt, "%s", lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "(error object is not a string)");
    }
    lua_settop(L, top);
  } else { /* on_panic came back: rt->error says why */
    c->rc = LH_ERR_RUN;
  }
  if (rt->budget > 0) lua_sethook(L, NULL, 0, 0); /* (without a budget, a hook is the host's) */
  rt->running = 0;
  return c->rc;
}

/* ---------------------------------------------------------------------------------------------
 * Creation */

typedef struct {
  call c;
  const lh_config *cfg;
} setup_call;

/* Libraries, the letta module, and for a sandbox its environment and client. */
static int setup(lua_State *L) {
  const lh_config *cfg = ((setup_call *)lua_touserdata(L, 1))->cfg;
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
  rt->L = lua_newstate(limited_alloc, rt);
  if (!rt->L) {
    free(rt);
    return NULL;
  }
  *(lh_runtime **)lua_getextraspace(rt->L) = rt;
  lua_atpanic(rt->L, on_panic);
  setup_call s = {{setup, NULL, LH_OK}, cfg}; /* set-up is ours: no budget yet */
  if (enter(rt, "lh_new", &s.c) != LH_OK) {
    lh_close(rt);
    return NULL;
  }
  rt->budget = cfg && cfg->instruction_limit > 0 ? cfg->instruction_limit : (rt->sandbox ? 100000000L : 0);
  return rt;
}

void lh_close(lh_runtime *rt) {
  if (!rt || rt->running) return; /* from a host function the script called: refused (lettash.h) */
  if (rt->L) lua_close(rt->L);    /* after a panic too: its objects are all on the GC's lists */
  free(rt->error);
  free(rt->result);
  free(rt);
}

/* ---------------------------------------------------------------------------------------------
 * Running */

typedef struct {
  call c;
  const char *code, *chunkname, *path; /* path: a file, else code */
} run_call;

/* Loads the chunk (text only) and runs it, in the sandbox's environment if there is one (a
 * chunk's first upvalue is its _ENV). A chunk that does not load fails with its own code. */
static int run_body(lua_State *L) {
  run_call *r = (run_call *)lua_touserdata(L, 1);
  int status = r->path ? luaL_loadfilex(L, r->path, "t")
                       : luaL_loadbufferx(L, r->code, strlen(r->code), r->chunkname ? r->chunkname : "=script", "t");
  if (status != LUA_OK) {
    r->c.rc = status == LUA_ERRSYNTAX ? LH_ERR_SYNTAX : status == LUA_ERRMEM ? LH_ERR_MEMORY : LH_ERR_FILE;
    return 1;
  }
  if (r->c.rt->sandbox) {
    lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_ENV);
    lua_setupvalue(L, -2, 1);
  }
  lua_call(L, 0, 0);
  return 0;
}

int lh_run_string(lh_runtime *rt, const char *code, const char *chunkname) {
  if (!rt || !code) return LH_ERR_ARG;
  run_call r = {{run_body, NULL, LH_OK}, code, chunkname, NULL};
  return enter(rt, "lh_run_string", &r.c);
}

int lh_run_file(lh_runtime *rt, const char *path) {
  if (!rt || !path) return LH_ERR_ARG;
  run_call r = {{run_body, NULL, LH_OK}, NULL, NULL, path};
  return enter(rt, "lh_run_file", &r.c);
}

typedef struct {
  call c;
  const char *name, *arg;
} fn_call;

/* Looks the function up (sandboxed scripts cannot make globals: they export through `exports`),
 * calls it, and keeps its first result as text: luaL_tolstring runs the result's __tostring and
 * __name, which a hostile script controls, so that too happens in here. */
static int call_body(lua_State *L) {
  fn_call *f = (fn_call *)lua_touserdata(L, 1);
  lh_runtime *rt = f->c.rt;
  free(rt->result);
  rt->result = NULL;
  if (rt->sandbox) {
    lua_getfield(L, LUA_REGISTRYINDEX, SANDBOX_ENV);
    lua_getfield(L, -1, "exports");
    lua_getfield(L, -1, f->name);
  } else {
    lua_getglobal(L, f->name);
  }
  if (!lua_isfunction(L, -1)) {
    f->c.rc = LH_ERR_ARG;
    lua_pushfstring(L, "no function '%s'%s", f->name, rt->sandbox ? " in exports" : "");
    return 1;
  }
  if (f->arg) lua_pushstring(L, f->arg);
  lua_call(L, f->arg ? 1 : 0, 1);
  if (lua_isnil(L, -1)) return 0;
  size_t n;
  const char *s = luaL_tolstring(L, -1, &n);
  if (!(rt->result = (char *)malloc(n + 1))) {
    f->c.rc = LH_ERR_MEMORY;
    lua_pushliteral(L, "not enough memory");
    return 1;
  }
  memcpy(rt->result, s, n + 1);
  return 0;
}

int lh_call(lh_runtime *rt, const char *name, const char *arg) {
  if (!rt || !name) return LH_ERR_ARG;
  fn_call f = {{call_body, NULL, LH_OK}, name, arg};
  return enter(rt, "lh_call", &f.c);
}

const char *lh_result(lh_runtime *rt) { return rt ? rt->result : NULL; }

typedef struct {
  call c;
  int timeout_ms, live;
} step_call;

/* One turn of letta.loop, if a script ever loaded it (else no task was ever started). */
static int step_body(lua_State *L) {
  step_call *s = (step_call *)lua_touserdata(L, 1);
  lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
  if (lua_getfield(L, -1, "letta.loop") != LUA_TTABLE) return 0;
  lua_getfield(L, -1, "step");
  lua_pushinteger(L, s->timeout_ms < 0 ? 0 : s->timeout_ms);
  lua_call(L, 1, 1);
  s->live = (int)lua_tointeger(L, -1);
  return 0;
}

int lh_step(lh_runtime *rt, int timeout_ms) {
  if (!rt) return -LH_ERR_ARG;
  step_call s = {{step_body, NULL, LH_OK}, timeout_ms, 0};
  int rc = enter(rt, "lh_step", &s.c);
  return rc != LH_OK ? -rc : s.live;
}

typedef struct {
  call c;
  struct pollfd *fds;
  int max, *timeout_ms, nfds;
} poll_call;

static int pollfds_body(lua_State *L) {
  poll_call *p = (poll_call *)lua_touserdata(L, 1);
  p->nfds = lh_http_pollfds(L, p->fds, p->max, p->timeout_ms);
  return 0;
}

int lh_pollfds(lh_runtime *rt, struct pollfd *fds, int max, int *timeout_ms) {
  poll_call p = {{pollfds_body, NULL, LH_OK}, fds, max, timeout_ms, 0};
  if (!rt || enter(rt, "lh_pollfds", &p.c) != LH_OK) { /* lh_step, called at once, says why */
    if (timeout_ms) *timeout_ms = 0;
    return 0;
  }
  return p.nfds;
}

typedef struct {
  call c;
  const lh_loop_hooks *hooks;
} hooks_call;

/* Through enter() like every entry point: refused on a broken runtime or from inside it. */
static int set_hooks(lua_State *L) {
  hooks_call *h = (hooks_call *)lua_touserdata(L, 1);
  if ((h->c.rc = lh_http_set_hooks(L, h->hooks)) == LH_OK) return 0;
  lua_pushstring(L, h->c.rc == LH_ERR_ARG ? "a loop hook is NULL" : "not enough memory");
  return 1;
}

int lh_set_loop_hooks(lh_runtime *rt, const lh_loop_hooks *hooks) {
  if (!rt) return LH_ERR_ARG;
  hooks_call h = {{set_hooks, rt, LH_OK}, hooks};
  return enter(rt, "lh_set_loop_hooks", &h.c);
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
