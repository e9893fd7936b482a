/* The embedding API (src/lettash.h) and the sandbox: every escape attempt fails with a clear
 * error and the host keeps running. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "lauxlib.h"
#include "lettash.h"

#define TOKEN "sekret-token-4242"

static lh_runtime *sandbox(size_t memory_limit) {
  lh_config cfg = {0};
  cfg.sandbox = 1;
  cfg.memory_limit = memory_limit;
  cfg.instruction_limit = 5000000;
  cfg.base_url = "http://127.0.0.1:9";
  cfg.token = TOKEN;
  return lh_new(&cfg);
}

/* Runs code expecting failure code rc and an error message containing msg. */
static void refused(lh_runtime *rt, const char *code, int rc, const char *msg) {
  int got = lh_run_string(rt, code, "=escape");
  if (got != rc || !strstr(lh_error(rt), msg))
    fprintf(stderr, "  %s\n    -> %d (want %d): %s\n", code, got, rc, lh_error(rt));
  CHECK(got == rc);
  CHECK(strstr(lh_error(rt), msg) != NULL);
  /* and the host goes on: the runtime still runs code */
  CHECK(lh_run_string(rt, "local x = 1 + 1", "=after") == LH_OK);
}

void test_embed_run_call_and_errors(void) {
  lh_runtime *rt = lh_new(NULL);
  CHECK(rt != NULL);
  CHECK(lh_run_string(rt, "function twice(s) return s .. s end", "=t") == LH_OK);
  CHECK(lh_call(rt, "twice", "ab") == LH_OK);
  CHECK_STR(lh_result(rt), "abab");
  CHECK(lh_run_string(rt, "x = = 1", "=bad") == LH_ERR_SYNTAX);
  CHECK(strstr(lh_error(rt), "bad:1:") != NULL);
  CHECK(lh_run_string(rt, "error('boom')", "=e") == LH_ERR_RUN);
  CHECK(strstr(lh_error(rt), "e:1: boom") != NULL && strstr(lh_error(rt), "stack traceback") != NULL);
  CHECK(lh_call(rt, "missing", NULL) == LH_ERR_ARG);
  CHECK(lh_run_file(rt, "/nonexistent/script.lua") == LH_ERR_FILE);
  CHECK(lh_run_string(rt, "\x1bLua", "=bin") == LH_ERR_SYNTAX); /* never binary chunks */
  CHECK(lh_step(rt, 0) == 0); /* no task was started */
  CHECK(lh_run_string(NULL, "x", NULL) == LH_ERR_ARG);
  lh_close(rt);
  lh_close(NULL);
}

void test_embed_host_allocator_and_state(void) {
  lh_runtime *rt = lh_new(NULL);
  lua_State *L = lh_state(rt);
  lua_pushinteger(L, 41);
  lua_setglobal(L, "answer");
  CHECK(lh_run_string(rt, "function get() return answer + 1 end", NULL) == LH_OK);
  CHECK(lh_call(rt, "get", NULL) == LH_OK);
  CHECK_STR(lh_result(rt), "42");
  lh_close(rt);
}

void test_embed_pollfds_for_event_loop_hosts(void) {
  int port, srv = silent_server(&port); /* the request stays in flight */
  char code[300];
  snprintf(code, sizeof code,
           "local letta = require 'letta'\n"
           "local c = letta.client{ base_url = 'http://127.0.0.1:%d', timeout = 5, max_retries = 0 }\n"
           "letta.spawn(function() pcall(c.health.check, c.health) end)",
           port);
  lh_runtime *rt = lh_new(NULL);
  CHECK(lh_run_string(rt, code, "=poll") == LH_OK);
  CHECK(lh_step(rt, 0) == 1); /* the task waits for its answer */
  struct pollfd fds[8];
  int timeout = -2;
  int n = lh_pollfds(rt, fds, 8, &timeout);
  CHECK(n >= 1);
  CHECK(timeout >= -1);
  lh_close(rt); /* aborts the transfer */
  close(srv);
}

void test_sandbox_cannot_read_files(void) {
  lh_runtime *rt = sandbox(0);
  CHECK(rt != NULL);
  refused(rt, "return io.open('/etc/passwd')", LH_ERR_RUN, "attempt to read undefined global 'io'");
  refused(rt, "return loadfile('/etc/passwd')", LH_ERR_RUN, "undefined global 'loadfile'");
  refused(rt, "return dofile('/etc/passwd')", LH_ERR_RUN, "undefined global 'dofile'");
  refused(rt, "return require('io')", LH_ERR_RUN, "undefined global 'require'");
  refused(rt, "return package.loaded.io", LH_ERR_RUN, "undefined global 'package'");
  lh_close(rt);
}

void test_sandbox_cannot_run_commands(void) {
  lh_runtime *rt = sandbox(0);
  refused(rt, "return os.execute('touch /tmp/lettash-pwned')", LH_ERR_RUN, "field 'execute'");
  refused(rt, "return os.getenv('HOME')", LH_ERR_RUN, "field 'getenv'");
  refused(rt, "return debug.getregistry()", LH_ERR_RUN, "undefined global 'debug'");
  CHECK(access("/tmp/lettash-pwned", F_OK) != 0);
  lh_close(rt);
}

void test_sandbox_cannot_load_bytecode(void) {
  lh_runtime *rt = sandbox(0);
  refused(rt, "return string.dump(print)", LH_ERR_RUN, "field 'dump'");
  refused(rt, "return load('\\27Lua\\84\\0', 'x', 'b')", LH_ERR_RUN, "binary chunks are not allowed");
  refused(rt, "local f, err = load('\\27Lua\\84\\0') assert(f, err)", LH_ERR_RUN, "attempt to load a binary chunk");
  CHECK(lh_run_string(rt, "assert(load('return 1 + 1')() == 2)", "=text") == LH_OK); /* text is fine */
  lh_close(rt);
}

void test_sandbox_cannot_read_the_token(void) {
  lh_runtime *rt = sandbox(0);
  /* walk everything reachable from the environment, looking for the token */
  const char *walk =
      "local seen, found = {}, false\n"
      "local function look(v, depth)\n"
      "  if depth > 6 then return end\n"
      "  if type(v) == 'string' and v:find('sekret', 1, true) then found = true end\n"
      "  if type(v) == 'table' and not seen[v] then\n"
      "    seen[v] = true\n"
      "    for k, x in pairs(v) do look(k, depth + 1) look(x, depth + 1) end\n"
      "    local mt = getmetatable(v) if type(mt) == 'table' then look(mt, depth + 1) end\n"
      "  end\n"
      "  if type(v) == 'userdata' then look(tostring(v), depth + 1) local mt = getmetatable(v) if type(mt) == 'table' then look(mt, depth + 1) end end\n"
      "end\n"
      "look(client, 0) look(letta, 0) look(tostring(client), 0)\n"
      "exports.found = function() return found end\n";
  CHECK(lh_run_string(rt, walk, "=walk") == LH_OK);
  CHECK(lh_call(rt, "found", NULL) == LH_OK);
  CHECK_STR(lh_result(rt), "false");
  /* nor send it elsewhere: the transport refuses any URL outside the host's server */
  refused(rt, "client.session:request('GET', 'http://127.0.0.1:1/steal')", LH_ERR_RUN, "refusing a request outside");
  refused(rt, "client.base_url = 'http://127.0.0.1:1' client.health:check()", LH_ERR_RUN, "refusing a request outside");
  CHECK(strstr(lh_error(rt), "sekret") == NULL);
  lh_close(rt);
}

void test_sandbox_infinite_loop_inside_pcall_is_stopped(void) {
  lh_runtime *rt = sandbox(0);
  refused(rt, "while true do pcall(function() while true do end end) end", LH_ERR_LIMIT,
          "instruction budget exceeded");
  refused(rt, "local co = coroutine.wrap(function() while true do end end) while true do pcall(co) end", LH_ERR_LIMIT,
          "instruction budget exceeded");
  refused(rt, "while true do xpcall(function() while true do end end, function() while true do end end) end",
          LH_ERR_LIMIT, "instruction budget exceeded");
  lh_close(rt);
}

void test_sandbox_memory_cap(void) {
  lh_runtime *rt = sandbox(16 << 20);
  CHECK(rt != NULL);
  int rc = lh_run_string(rt, "local t = {} for i = 1, 1e8 do t[i] = ('x'):rep(64) .. i end", "=hog");
  CHECK(rc == LH_ERR_MEMORY || (rc == LH_ERR_RUN && strstr(lh_error(rt), "not enough memory")));
  CHECK(strstr(lh_error(rt), "not enough memory") != NULL);
  /* caught inside the script, it still cannot get past the cap, and the host goes on */
  rc = lh_run_string(rt, "local ok = pcall(function() local s = ('x'):rep(64 * 1024 * 1024) end) assert(not ok)", "=hog2");
  CHECK(rc == LH_OK);
  CHECK(lh_run_string(rt, "local x = {} for i = 1, 1000 do x[i] = i end", "=small") == LH_OK);
  lh_close(rt);
}

void test_sandbox_frozen_globals_and_exports(void) {
  lh_runtime *rt = sandbox(0);
  refused(rt, "x = 1", LH_ERR_RUN, "attempt to create global 'x'");
  refused(rt, "return undefined_thing", LH_ERR_RUN, "attempt to read undefined global 'undefined_thing'");
  refused(rt, "rawset(_ENV, 'x', 1)", LH_ERR_RUN, "undefined global 'rawset'");
  refused(rt, "setmetatable(_ENV, nil)", LH_ERR_RUN, "cannot change a protected metatable");
  refused(rt, "getmetatable('').__index.rep = nil", LH_ERR_RUN, "attempt to index a nil value (field '__index')");
  refused(rt, "collectgarbage('stop')", LH_ERR_RUN, "only \"count\" and \"collect\"");
  refused(rt, "setmetatable({}, {__gc = function() while true do end end})", LH_ERR_RUN, "__gc metamethods are not allowed");
  CHECK(lh_run_string(rt, "string.rep = nil", "=own") == LH_OK); /* its own copy */
  CHECK(lh_run_string(rt, "assert(('ab'):rep(2) == 'abab')", "=shared") == LH_OK); /* not the real one */
  CHECK(lh_run_string(rt, "exports.hello = function(n) return 'hi ' .. n end", "=exp") == LH_OK);
  CHECK(lh_call(rt, "hello", "host") == LH_OK);
  CHECK_STR(lh_result(rt), "hi host");
  CHECK(lh_call(rt, "print", "x") == LH_ERR_ARG); /* only exports are callable */
  lh_close(rt);
}

/* ---------------------------------------------------------------------------------------------
 * Hostile scripts: whatever a script does with metatables, error objects or memory, the entry
 * point returns a code with a message, and the runtime goes on. */

/* Runs code (which must load and run), then calls exports.f (sandbox) expecting rc and msg. */
static void call_fails(const char *code, int rc, const char *msg) {
  lh_runtime *rt = sandbox(0);
  CHECK(lh_run_string(rt, code, "=hostile") == LH_OK);
  int got = lh_call(rt, "f", NULL);
  if (got != rc || !strstr(lh_error(rt), msg))
    fprintf(stderr, "  %s\n    -> %d (want %d): %s\n", code, got, rc, lh_error(rt));
  CHECK(got == rc);
  CHECK(strstr(lh_error(rt), msg) != NULL);
  CHECK(lh_result(rt) == NULL);
  CHECK(lh_run_string(rt, "exports.g = function() return 'still here' end", "=after") == LH_OK);
  CHECK(lh_call(rt, "g", NULL) == LH_OK);
  CHECK_STR(lh_result(rt), "still here");
  lh_close(rt);
}

void test_embed_hostile_tostring_of_a_result(void) {
  /* lh_call converts the result with luaL_tolstring, which runs __tostring: it used to do so
   * outside any protected call, and the host died with SIGABRT */
  call_fails("exports.f = function() return setmetatable({}, {__tostring = error}) end", LH_ERR_RUN,
             "stack traceback");
  call_fails("exports.f = function() return setmetatable({}, {__tostring = function() error('nope') end}) end",
             LH_ERR_RUN, "hostile:1: nope");
  call_fails("exports.f = function() return setmetatable({}, {__tostring = function() return {} end}) end",
             LH_ERR_RUN, "'__tostring' must return a string");
  call_fails("exports.f = function() return setmetatable({}, {__tostring = coroutine.yield}) end", LH_ERR_RUN,
             "attempt to yield");
  /* a __name that is not a string is ignored, as lua5.4's tostring does */
  lh_runtime *rt = sandbox(0);
  CHECK(lh_run_string(rt, "exports.f = function() return setmetatable({}, {__name = {}}) end", "=n") == LH_OK);
  CHECK(lh_call(rt, "f", NULL) == LH_OK);
  CHECK(lh_result(rt) && strncmp(lh_result(rt), "table: ", 7) == 0);
  lh_close(rt);
}

void test_embed_hostile_exports_table(void) {
  /* the host's lookup of the function runs the script's __index (it used to run unprotected) */
  lh_runtime *rt = sandbox(0);
  CHECK(lh_run_string(rt, "setmetatable(exports, {__index = function(_, k) error('no export ' .. k) end})", "=idx") ==
        LH_OK);
  CHECK(lh_call(rt, "missing", NULL) == LH_ERR_RUN);
  CHECK(strstr(lh_error(rt), "no export missing") != NULL);
  CHECK(lh_run_string(rt, "exports = 42", "=num") == LH_OK);
  CHECK(lh_call(rt, "f", NULL) == LH_ERR_RUN);
  CHECK(strstr(lh_error(rt), "attempt to index a number value") != NULL);
  lh_close(rt);
  /* and outside the sandbox, a global table with a raising __index */
  rt = lh_new(NULL);
  CHECK(lh_run_string(rt, "setmetatable(_G, {__index = function(_, k) error('no global ' .. k) end})", "=g") == LH_OK);
  CHECK(lh_call(rt, "missing", NULL) == LH_ERR_RUN);
  CHECK(strstr(lh_error(rt), "no global missing") != NULL);
  CHECK(lh_step(rt, 0) == 0);
  lh_close(rt);
}

void test_embed_gc_and_close_metamethods_that_raise(void) {
  /* Lua 5.4 turns an error in __gc into a warning (off here): nothing reaches the host */
  lh_runtime *rt = lh_new(NULL);
  CHECK(lh_run_string(rt, "setmetatable({}, {__gc = function() error('in gc') end}) collectgarbage()", "=gc") == LH_OK);
  CHECK(lh_run_string(rt, "keep = setmetatable({}, {__gc = function() error('at close') end})", "=gc2") == LH_OK);
  /* an error in __close replaces the error being raised, and is reported as any error */
  CHECK(lh_run_string(rt, "local x <close> = setmetatable({}, {__close = function() error('closing') end})", "=cl") ==
        LH_ERR_RUN);
  CHECK(strstr(lh_error(rt), "cl:1: closing") != NULL);
  CHECK(lh_run_string(rt, "function f() local x <close> = setmetatable({}, {__close = function() error({}) end}) "
                          "error('body') end", "=cl2") == LH_OK);
  CHECK(lh_call(rt, "f", NULL) == LH_ERR_RUN);
  CHECK(strstr(lh_error(rt), "(error object is a table value)") != NULL);
  lh_close(rt); /* runs keep's __gc: a warning, not a crash */
}

/* The message of `error(<expr>)` run in a fresh sandbox. */
static void error_says(const char *expr, const char *msg) {
  lh_runtime *rt = sandbox(0);
  char code[300];
  snprintf(code, sizeof code, "error(%s)", expr);
  CHECK(lh_run_string(rt, code, "=obj") == LH_ERR_RUN);
  if (!strstr(lh_error(rt), msg)) fprintf(stderr, "  error(%s) -> %s\n", expr, lh_error(rt));
  CHECK(strstr(lh_error(rt), msg) != NULL);
  lh_close(rt);
}

void test_embed_error_objects_that_are_not_strings(void) {
  error_says("{code = 1}", "(error object is a table value)");
  error_says("setmetatable({}, {__tostring = function() return 'a custom error' end})", "a custom error");
  /* a __tostring that raises used to make the message handler fail over and over, until Lua
   * gave up with "error in error handling" */
  error_says("setmetatable({}, {__tostring = error})", "(error object is a table value)");
  error_says("setmetatable({}, {__tostring = function() error('again') end})", "(error object is a table value)");
  error_says("setmetatable({}, {__tostring = function() return 42 end})", "(error object is a table value)");
  error_says("setmetatable({}, {__tostring = coroutine.yield})", "(error object is a table value)");
  error_says("nil", "(error object is a nil value)");
  error_says("42", "42");
}

void test_embed_memory_exhausted_while_reporting(void) {
  lh_runtime *rt = sandbox(1 << 20);
  CHECK(rt != NULL);
  /* the script fills memory and holds it while it raises: the message handler (its traceback,
   * the error object's __tostring) has no memory left */
  const char *fill =
      "local t = {}\n"
      "pcall(function() while true do t[#t + 1] = ('x'):rep(512) .. #t end end)\n"
      "error(setmetatable({}, {__tostring = function() return ('y'):rep(4096) end}))\n";
  int rc = lh_run_string(rt, fill, "=fill");
  CHECK(rc == LH_ERR_MEMORY || rc == LH_ERR_RUN);
  CHECK(lh_error(rt)[0] != '\0');
  CHECK(lh_run_string(rt, "local t = {} pcall(function() while true do t[#t + 1] = {} end end) error('full')", "=fill2") !=
        LH_OK);
  CHECK(lh_error(rt)[0] != '\0');
  /* the host's own argument does not fit: pushing it used to raise outside any protected call */
  static char big[2 << 20];
  memset(big, 'a', sizeof big - 1);
  CHECK(lh_run_string(rt, "exports.echo = function(s) return s end", "=echo") == LH_OK);
  CHECK(lh_call(rt, "echo", big) == LH_ERR_MEMORY);
  CHECK(strstr(lh_error(rt), "not enough memory") != NULL);
  /* and once the script let go, the runtime works again */
  CHECK(lh_call(rt, "echo", "small") == LH_OK);
  CHECK_STR(lh_result(rt), "small");
  lh_close(rt);
}

/* What Lua calls on an error outside any protected call, called here on purpose: such an error
 * cannot happen in the entry points any more, so the test raises the panic itself. */
static lua_CFunction installed_panic;

static int force_panic(lua_State *L) {
  lua_pushliteral(L, "forced for the test");
  return installed_panic(L);
}

void test_embed_panic_becomes_err_run(void) {
  lh_runtime *rt = lh_new(NULL);
  lua_State *L = lh_state(rt);
  installed_panic = lua_atpanic(L, NULL);
  lua_atpanic(L, installed_panic);
  CHECK(installed_panic != NULL);
  if (!installed_panic) { /* the old runtime had none: Lua would abort() */
    lh_close(rt);
    return;
  }
  lua_register(L, "force_panic", force_panic);
  CHECK(lh_run_string(rt, "function f() local t <close> = setmetatable({}, {__close = function() end}) force_panic() end",
                      "=p") == LH_OK);
  CHECK(lh_call(rt, "f", NULL) == LH_ERR_RUN);
  CHECK(strstr(lh_error(rt), "Lua panic") != NULL && strstr(lh_error(rt), "forced for the test") != NULL);
  CHECK(lh_run_string(rt, "return 1", "=later") == LH_ERR_RUN);
  CHECK_STR(lh_error(rt), "the runtime is unusable after a Lua panic");
  CHECK(lh_call(rt, "f", NULL) == LH_ERR_RUN);
  CHECK(lh_step(rt, 0) == -LH_ERR_RUN);
  int timeout = -2;
  CHECK(lh_pollfds(rt, NULL, 0, &timeout) == 0 && timeout == 0);
  lh_close(rt); /* frees the state all the same (the asan build checks for leaks) */
}

/* A host function that calls back into the runtime that is running it. */
static lh_runtime *reentered;
static int reentry_rc[5];
static char reentry_msg[5][80];

static int reenter(lua_State *L) {
  int timeout = -2;
  reentry_rc[0] = lh_run_string(reentered, "return 1", "=inner");
  snprintf(reentry_msg[0], sizeof reentry_msg[0], "%s", lh_error(reentered));
  reentry_rc[1] = lh_call(reentered, "f", NULL);
  snprintf(reentry_msg[1], sizeof reentry_msg[1], "%s", lh_error(reentered));
  reentry_rc[2] = lh_step(reentered, 0);
  snprintf(reentry_msg[2], sizeof reentry_msg[2], "%s", lh_error(reentered));
  reentry_rc[3] = lh_run_file(reentered, "/dev/null");
  snprintf(reentry_msg[3], sizeof reentry_msg[3], "%s", lh_error(reentered));
  reentry_rc[4] = lh_pollfds(reentered, NULL, 0, &timeout) == 0 && timeout == 0 ? -LH_ERR_ARG : 0;
  snprintf(reentry_msg[4], sizeof reentry_msg[4], "%s", lh_error(reentered));
  lh_close(reentered); /* refused: does nothing */
  lua_pushinteger(L, 7);
  return 1;
}

static void check_reentry_refused(void) {
  static const char *const msgs[] = {"lh_run_string called from inside the runtime",
                                     "lh_call called from inside the runtime",
                                     "lh_step called from inside the runtime",
                                     "lh_run_file called from inside the runtime",
                                     "lh_pollfds called from inside the runtime"};
  CHECK(reentry_rc[0] == LH_ERR_ARG && reentry_rc[1] == LH_ERR_ARG && reentry_rc[2] == -LH_ERR_ARG);
  CHECK(reentry_rc[3] == LH_ERR_ARG && reentry_rc[4] == -LH_ERR_ARG);
  for (int i = 0; i < 5; i++) CHECK_STR(reentry_msg[i], msgs[i]);
  memset(reentry_rc, 0, sizeof reentry_rc);
}

void test_embed_reentry_is_refused(void) {
  lh_runtime *rt = reentered = lh_new(NULL);
  lua_register(lh_state(rt), "reenter", reenter);
  CHECK(lh_run_string(rt, "function f() return reenter() end", "=r") == LH_OK);
  CHECK(lh_call(rt, "f", NULL) == LH_OK);
  CHECK_STR(lh_result(rt), "7"); /* the outer call goes on undisturbed */
  check_reentry_refused();
  /* from inside a task (a coroutine) too, driven by lh_step */
  CHECK(lh_run_string(rt, "local letta = require 'letta' letta.spawn(function() letta.sleep(0) got = reenter() end)",
                      "=task") == LH_OK);
  for (int i = 0; i < 10 && lh_step(rt, 1) > 0; i++) {
  }
  check_reentry_refused();
  CHECK(lh_run_string(rt, "assert(got == 7)", "=check") == LH_OK);
  lh_close(rt);
}

/* Nothing a sandboxed script does holds the host inside its call: a wait outside a task (sleep, a
 * request, a join, request:wait on the client's session) raises at once; gather refuses what is
 * not a task (it used to wait forever for a string). Before: each of these blocked lh_run_string
 * (sleep and the requests for as long as asked, gather forever), which the instruction budget
 * cannot see. In a task, the same request leaves lh_step free. */
void test_sandbox_waits_never_block_the_host(void) {
  int port, srv = silent_server(&port);
  char url[64];
  snprintf(url, sizeof url, "http://127.0.0.1:%d", port);
  lh_config cfg = {0};
  cfg.sandbox = 1;
  cfg.base_url = url;
  lh_runtime *rt = lh_new(&cfg);
  const char *blocking[] = {
      "letta.sleep(1000)",
      "client.health:check()",
      "letta.spawn(function() letta.sleep(1000) end):wait()",
      "local r = client.session:request('GET', client.base_url .. '/v1/health/') r:wait(1000000)",
  };
  time_t t0 = time(NULL);
  for (size_t i = 0; i < sizeof blocking / sizeof *blocking; i++)
    refused(rt, blocking[i], LH_ERR_RUN, "would block the host");
  refused(rt, "letta.gather('x')", LH_ERR_RUN, "task or function expected, got string");
  CHECK(lh_run_string(rt, "letta.spawn(function() client.health:check() end)", "=task") == LH_OK);
  CHECK(lh_step(rt, 0) >= 1); /* the task waits for its answer; the host goes on */
  CHECK(time(NULL) - t0 <= 2);
  lh_close(rt);
  close(srv);
}
