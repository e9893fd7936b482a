/* libFuzzer target for the embedding API: the input is a script the host did not write, run in
 * the sandbox (8 MB of memory, 200000 instructions per call) through lh_run_string, then the
 * exported functions below through lh_call, then a few lh_step(rt, 0) for the tasks it left. The
 * host must never crash, abort or leak, every call must answer a known code, and the client's
 * token must never show in a message or a result. The server is 127.0.0.1:9 (discard): every
 * request fails at connect, at once. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lettash.h"

#define TOKEN "fuzz-sekret-7373"

/* The sandbox as hosts see it, with nothing shortened: outside a task every wait raises
 * (loop.refuse_blocking), and in tasks lh_step(rt, 0) never waits. (A 10-minute run found
 * letta.gather('x') waiting forever for a "task" that is a string: gather now refuses it.) */

static const char *const EXPORTS[] = {"f", "main", "on_event", "tick"};

static uint64_t fnv1a(const char *s, size_t n) {
  uint64_t h = 14695981039346656037ULL;
  for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
  return h;
}

/* Whether s holds the token. Not with strstr: libFuzzer watches the arguments of strstr and
 * memcmp and would copy the token into the script (which may of course print its own text);
 * it cannot invert a hash of each window. */
static int holds_token(const char *s) {
  static const size_t n = sizeof TOKEN - 1;
  const uint64_t want = fnv1a(TOKEN, n);
  for (size_t len = s ? strlen(s) : 0, i = 0; i + n <= len; i++)
    if (fnv1a(s + i, n) == want) return 1;
  return 0;
}

static void check(lh_runtime *rt, int rc) {
  if (rc < LH_OK || rc > LH_ERR_ARG) abort();
  const char *e = lh_error(rt);
  if (e == NULL || (rc != LH_OK && e[0] == '\0')) abort(); /* a failure always says why */
  if (holds_token(e) || holds_token(lh_result(rt))) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *code = (char *)malloc(size + 1);
  if (!code) return 0;
  memcpy(code, data, size);
  code[size] = '\0'; /* a NUL inside ends the script early: fine */
  if (holds_token(code)) { /* it knows the token already: its messages may quote it */
    free(code);
    return 0;
  }
  lh_config cfg = {0};
  cfg.sandbox = 1;
  cfg.memory_limit = 8 << 20;
  cfg.instruction_limit = 200000;
  cfg.base_url = "http://127.0.0.1:9";
  cfg.token = TOKEN;
  lh_runtime *rt = lh_new(&cfg);
  if (!rt) {
    fprintf(stderr, "fuzz_sandbox: lh_new failed\n");
    abort();
  }
  check(rt, lh_run_string(rt, code, "=fuzz"));
  for (size_t i = 0; i < sizeof EXPORTS / sizeof EXPORTS[0]; i++) {
    check(rt, lh_call(rt, EXPORTS[i], i % 2 ? NULL : "fuzz"));
  }
  for (int i = 0; i < 3; i++) {
    int live = lh_step(rt, 0);
    check(rt, live < 0 ? -live : LH_OK);
  }
  lh_close(rt);
  free(code);
  return 0;
}
