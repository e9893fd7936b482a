/* lettash: a Lua 5.4 runtime for automating Letta servers, embeddable in game and tool hosts.
 * This is the whole public C API (bin/liblettash.a, bin/liblettash.so; pkg-config lettash).
 * Conventions: functions returning int give LH_OK (0) or an LH_ERR_* code, with the message in
 * lh_error(); nothing here calls exit() or prints; strings returned are owned by the runtime and
 * valid until the next call on it. A runtime is single-threaded: use it from one thread. */
#ifndef LETTASH_H
#define LETTASH_H

#include <stddef.h>

#include "lua.h"

#define LETTASH_VERSION "0.1.0"

/* ---------------------------------------------------------------------------------------------
 * Embedding */

typedef struct lh_runtime lh_runtime;

enum {
  LH_OK = 0,
  LH_ERR_RUN = 1,    /* a Lua error (the message says which) */
  LH_ERR_SYNTAX = 2, /* the code does not compile */
  LH_ERR_MEMORY = 3, /* the memory limit (or the host's allocator) refused */
  LH_ERR_LIMIT = 4,  /* the instruction budget of one call ran out */
  LH_ERR_FILE = 5,   /* a file could not be read */
  LH_ERR_ARG = 6     /* a bad argument from the host (e.g. NULL code, unknown function) */
};

typedef struct lh_config {
  lua_Alloc alloc;          /* the host's allocator (lua_Alloc contract); NULL: realloc/free */
  void *alloc_ud;           /* passed to alloc */
  size_t memory_limit;      /* bytes of Lua memory the runtime may hold; 0: no limit */
  long instruction_limit;   /* Lua instructions per host call (run, call, step); 0: no limit */
  int sandbox;              /* 1: scripts are untrusted: see README "Sandbox" */
  const char *base_url;     /* the server of the `client` global (sandbox) or of letta.client() */
  const char *token;        /* its token: kept in C, never readable from a script */
} lh_config;

/* Creates a runtime (a Lua state with the Letta library). cfg may be NULL (defaults, no sandbox;
 * the client then reads LETTA_BASE_URL/LETTA_API_KEY/LETTA_PASSWORD). Returns NULL when memory
 * runs out. The caller owns the runtime: free it with lh_close. */
lh_runtime *lh_new(const lh_config *cfg);

/* Closes the runtime: aborts transfers in flight, frees everything (after a panic too). NULL-safe.
 * Called from inside the runtime (a host function the script called), it does nothing. */
void lh_close(lh_runtime *rt);

/* Runs a chunk of Lua source (never binary) or a file. Tasks it starts (letta.spawn) go on in
 * lh_step. Returns LH_OK or an error code. */
int lh_run_string(lh_runtime *rt, const char *code, const char *chunkname);
int lh_run_file(lh_runtime *rt, const char *path);

/* Calls the global function `name` with one string argument (arg may be NULL: no argument).
 * Its first result, converted to a string, is then lh_result(rt) (NULL if nil). */
int lh_call(lh_runtime *rt, const char *name, const char *arg);
const char *lh_result(lh_runtime *rt);

/* Advances every transfer and resumes the tasks whose requests have news, waiting at most
 * timeout_ms for the network (0: poll, for a frame tick). Returns the number of tasks still
 * running (>= 0), or -(error code) when the step itself failed. A task's own error does not fail
 * the step: the task ends, and the script sees it when it waits for the task. */
int lh_step(lh_runtime *rt, int timeout_ms);

/* For hosts with their own event loop: fills fds (up to max) with the sockets in use and their
 * events, sets *timeout_ms to the longest wait before lh_step must run (-1: no timer). Returns
 * the number of fds. Call lh_step(rt, 0) when one is ready or the timeout passes. When it fails
 * it returns 0 with *timeout_ms 0, so that the lh_step that follows reports why. */
struct pollfd;
int lh_pollfds(lh_runtime *rt, struct pollfd *fds, int max, int *timeout_ms);

/* For hosts whose event loop watches sockets itself (as hiredis's adapters and luv plug into
 * one): lettash calls watch(ud, fd, events) when a socket is to be watched for events (POLLIN
 * and/or POLLOUT; 0: no longer), and timer(ud, timeout_ms) to arm the host's one one-shot timer,
 * replacing the last: lh_step is due within timeout_ms (0: at once; -1: no timer). Call
 * lh_step(rt, 0) when a watched socket is ready or the timer fires (each lh_step arms it again
 * when needed). The hooks run inside lettash's calls (lh_step, lh_run_*, lh_call, lh_close...):
 * they must only record, never call the runtime. */
typedef struct lh_loop_hooks {
  void *ud;
  void (*watch)(void *ud, int fd, int events);
  void (*timer)(void *ud, long timeout_ms);
} lh_loop_hooks;

/* Installs the hooks (copied; the new ones are told at once of the sockets in use and the
 * timer), or with NULL removes them (the old ones are told to drop every socket and the timer).
 * Returns LH_OK, LH_ERR_ARG (a NULL callback) or LH_ERR_MEMORY. lh_pollfds keeps working. */
int lh_set_loop_hooks(lh_runtime *rt, const lh_loop_hooks *hooks);

/* Safety of the entry points (lh_new, lh_run_*, lh_call, lh_step, lh_pollfds): each runs its whole
 * body, the conversion of results and error objects to text included, inside one protected call,
 * so a script (its metamethods, its error objects, running out of memory) cannot crash the host;
 * it only makes the call fail. A host function registered in the runtime that calls one of them
 * on the same runtime while it runs gets LH_ERR_ARG ("lh_call called from inside the runtime").
 * Panics: the runtime installs a lua_atpanic handler. A panic during an entry point (an error
 * outside any protected call; none of ours should raise one) returns from that entry point with
 * LH_ERR_RUN, and the runtime is then broken: every later call returns LH_ERR_RUN ("the runtime is
 * unusable after a Lua panic"); only lh_close is useful. A Lua error the host raises itself
 * through lh_state() outside any entry point and any lua_pcall has nothing to return to: the
 * handler writes it to stderr and Lua aborts, as with lauxlib's handler. */

/* The message of the last error (empty string if none). Never NULL. */
const char *lh_error(lh_runtime *rt);

/* The runtime's Lua state, for hosts that register their own functions. */
lua_State *lh_state(lh_runtime *rt);

/* ---------------------------------------------------------------------------------------------
 * Lower level: for hosts that own their Lua state */

#define LH_NOENV 1 /* ignore LETTASH_LUA_PATH (and, as in lua.c, LUA_PATH/LUA_CPATH) */

/* Opens Lua's standard libraries and lh_preload()s lettash's modules. Raises Lua errors only on
 * memory exhaustion (call it inside lua_pcall, as lua.c does). */
void lh_openlibs(lua_State *L, int flags);

/* Registers lettash's modules in package.preload: the Lua library compiled in (`letta`,
 * `letta.*`, chunk names "@letta/<file>.lua"), its C parts and `cjson`. Loads nothing yet. With
 * LETTASH_LUA_PATH set (';'-separated directories holding letta/), the Lua sources are read from
 * there instead. */
void lh_preload(lua_State *L, int flags);

/* A message handler for lua_pcall, as lua.c's: a string error with a traceback; an error object
 * with a __tostring (a letta.Error) as that string alone. The __tostring runs protected: one that
 * raises or returns a non-string gives "(error object is a table value)" and the traceback. */
int lh_traceback(lua_State *L);

/* The module loader of `letta` for stock Lua (bin/letta.so): require "letta". */
int luaopen_letta(lua_State *L);

/* Version strings of libcurl (loads it; "unavailable (<why>)" when it cannot be) and LMDB.
 * Static storage; never NULL. */
const char *lh_version_curl(void);
const char *lh_version_lmdb(void);

#endif
