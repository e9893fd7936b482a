/* Unit tests of the HTTP response-header parser (src/lh_headers.c, behind request:headers()).
 * Its fuzz target is tests/fuzz/fuzz_headers.c; inputs the fuzzer finds to crash it belong here. */
#include <stdlib.h>

#include "check.h"
#include "lh_headers.h"

typedef struct {
  char out[2048];
  size_t len;
  int calls, stop_at;
} rec;

/* "name=value|" per pair, NUL bytes shown as \0 */
static int collect(void *ud, const char *name, size_t nlen, const char *value, size_t vlen) {
  rec *r = ud;
  for (int part = 0; part < 2; part++) {
    const char *s = part ? value : name;
    size_t n = part ? vlen : nlen;
    for (size_t i = 0; i < n && r->len + 3 < sizeof r->out; i++) {
      if (s[i] == 0) r->out[r->len++] = '\\', r->out[r->len++] = '0';
      else r->out[r->len++] = s[i];
    }
    if (r->len + 2 < sizeof r->out) r->out[r->len++] = part ? '|' : '=';
  }
  r->out[r->len] = 0;
  r->calls++;
  return r->stop_at && r->calls >= r->stop_at ? 3 : 0;
}

static const char *parse(const char *s, size_t len, int stop_at, int *rc) {
  static rec r;
  memset(&r, 0, sizeof r);
  r.stop_at = stop_at;
  int got = lh_headers_parse(s, len, collect, &r);
  if (rc) *rc = got;
  return r.out;
}

#define P(lit) parse(lit, sizeof(lit) - 1, 0, NULL)

void test_headers_status_line_and_pairs(void) {
  CHECK_STR(P("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nRetry-After: 2\r\n\r\n"),
            "Content-Type=application/json|Retry-After=2|");
  CHECK_STR(P("HTTP/2 429\r\nretry-after-ms:150\r\n\r\n"), "retry-after-ms=150|");
}

void test_headers_trimming_and_odd_lines(void) {
  /* leading spaces and tabs, trailing spaces and CR go; inner colons stay in the value */
  CHECK_STR(P("X-A: \t v a l  \r\r\nX-B:a:b:c\nX-Empty:\r\nX-Spaces:    \r\n"),
            "X-A=v a l|X-B=a:b:c|X-Empty=|X-Spaces=|");
  /* no colon, or a colon first: skipped */
  CHECK_STR(P("NoColon\r\n: nameless\r\n:\r\nok: 1\r\n"), "ok=1|");
  /* a last line without LF counts; a bare LF line is skipped */
  CHECK_STR(P("\n\nlast: x"), "last=x|");
  /* NUL bytes are data, not terminators */
  const char nul[] = "X-N\0l: a\0b\r\n";
  CHECK_STR(parse(nul, sizeof nul - 1, 0, NULL), "X-N\\0l=a\\0b|");
}

void test_headers_empty_and_null_input(void) {
  int rc = -1;
  CHECK_STR(parse(NULL, 0, 0, &rc), "");
  CHECK(rc == 0);
  CHECK_STR(parse("", 0, 0, &rc), "");
  CHECK_STR(parse("\r\n", 2, 0, &rc), "");
  CHECK_STR(parse(":", 1, 0, &rc), "");
  CHECK_STR(parse("a:", 2, 0, &rc), "a=|");
}

void test_headers_ends_exactly_at_the_buffer_end(void) {
  /* exact-size heap copies: a read past the end shows under ASan/valgrind */
  const char *cases[] = {"a: b", "a: b\n", "a: b\r", "a:", "a", "\n", "a:  ", "x: y\r\n\r\n"};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = strlen(cases[i]);
    char *copy = malloc(n);
    memcpy(copy, cases[i], n);
    parse(copy, n, 0, NULL);
    free(copy);
  }
  CHECK(1);
}

void test_headers_callback_stops_the_parse(void) {
  int rc = 0;
  CHECK_STR(parse("a: 1\nb: 2\nc: 3\n", 15, 2, &rc), "a=1|b=2|");
  CHECK(rc == 3);
}
