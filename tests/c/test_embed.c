/* The embedding API (src/lettash.h) and the sandbox: every escape attempt fails with a clear
 * error and the host keeps running. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
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
  /* a server that accepts nothing: the request stays in flight */
  int srv = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(srv, (struct sockaddr *)&a, sizeof a) == 0 && listen(srv, 4) == 0);
  socklen_t len = sizeof a;
  getsockname(srv, (struct sockaddr *)&a, &len);
  char code[300];
  snprintf(code, sizeof code,
           "local letta = require 'letta'\n"
           "local c = letta.client{ base_url = 'http://127.0.0.1:%d', timeout = 5, max_retries = 0 }\n"
           "letta.spawn(function() pcall(c.health.check, c.health) end)",
           ntohs(a.sin_port));
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
