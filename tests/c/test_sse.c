/* Unit tests of the incremental SSE parser (src/lh_sse.c). Every stream is parsed whole, byte by
 * byte, in fixed-size chunks and in every 2-way split, and each way must give the same events. */
#include <limits.h>
#include <stdlib.h>

#include "check.h"
#include "lh_sse.h"

typedef struct {
  char *s;
  size_t len, cap;
  int events;
  int stop_at; /* the callback returns 7 from this event on (1-based); 0 = never */
} recorder;

static void put(recorder *r, const char *s, size_t n) {
  if (r->len + n + 1 > r->cap) {
    while (r->len + n + 1 > r->cap) r->cap = r->cap ? r->cap * 2 : 256;
    r->s = realloc(r->s, r->cap);
    if (!r->s) abort();
  }
  memcpy(r->s + r->len, s, n);
  r->len += n;
  r->s[r->len] = '\0';
}

static void put_escaped(recorder *r, const char *s, size_t n) {
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char tmp[8];
    if (c == '\n') put(r, "\\n", 2);
    else if (c == '\r') put(r, "\\r", 2);
    else if (c == '\\') put(r, "\\\\", 2);
    else if (c < 0x20 || c >= 0x7f) put(r, tmp, (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c));
    else put(r, (const char *)&s[i], 1);
  }
}

/* One line per event: type(data), then " id=..." and " retry=..." when set. */
static int record(void *ud, const lh_sse_event *ev) {
  recorder *r = ud;
  char tmp[32];
  CHECK(ev->data[ev->data_len] == '\0');
  r->events++;
  put_escaped(r, ev->event, strlen(ev->event));
  put(r, "(", 1);
  put_escaped(r, ev->data, ev->data_len);
  put(r, ")", 1);
  if (*ev->id) {
    put(r, " id=", 4);
    put_escaped(r, ev->id, strlen(ev->id));
  }
  if (ev->retry >= 0) put(r, tmp, (size_t)snprintf(tmp, sizeof tmp, " retry=%ld", ev->retry));
  put(r, "\n", 1);
  return r->stop_at && r->events >= r->stop_at ? 7 : 0;
}

/* Feeds in[0..len) in chunks of `step` bytes, except that the first chunk ends at `cut` when
 * cut > 0. Returns the events (caller frees), then "rc=N" if a feed failed. */
static char *run(const char *in, size_t len, size_t max, int stop_at, size_t step, size_t cut) {
  recorder r = {0};
  r.stop_at = stop_at;
  put(&r, "", 0);
  lh_sse *p = lh_sse_new(record, &r, max);
  CHECK(p != NULL);
  int rc = 0;
  for (size_t at = 0; at < len && rc == 0;) {
    size_t n = at == 0 && cut ? cut : step;
    if (n > len - at) n = len - at;
    rc = lh_sse_feed(p, in + at, n);
    at += n;
  }
  if (rc) {
    char tmp[32];
    put(&r, tmp, (size_t)snprintf(tmp, sizeof tmp, "rc=%d\n", rc));
    CHECK(lh_sse_feed(p, "data: more\n\n", 12) == rc); /* a failure is final */
  }
  lh_sse_free(p);
  return r.s;
}

/* Checks that every way of cutting `in` into chunks gives `want`. */
static void expect(const char *in, size_t len, size_t max, int stop_at, const char *want, int line) {
  char *whole = run(in, len, max, stop_at, len ? len : 1, 0);
  if (strcmp(whole, want) != 0) {
    fprintf(stderr, "  line %d: whole feed gave\n%s  want\n%s", line, whole, want);
    lh_check_failures++;
  }
  static const size_t steps[] = {1, 2, 3, 7};
  for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
    char *got = run(in, len, max, stop_at, steps[i], 0);
    if (strcmp(got, whole) != 0) {
      fprintf(stderr, "  line %d: chunks of %zu gave\n%s  whole gave\n%s", line, steps[i], got, whole);
      lh_check_failures++;
    }
    free(got);
  }
  for (size_t cut = 1; cut < len; cut++) {
    char *got = run(in, len, max, stop_at, len, cut);
    int same = strcmp(got, whole) == 0;
    if (!same) {
      fprintf(stderr, "  line %d: split at %zu gave\n%s  whole gave\n%s", line, cut, got, whole);
      lh_check_failures++;
    }
    free(got);
    if (!same) break;
  }
  free(whole);
}

/* `in` must be a string literal (it may hold NUL bytes). */
#define EXPECT(in, want) expect(in, sizeof(in) - 1, 0, 0, want, __LINE__)
#define EXPECT_MAX(in, max, want) expect(in, sizeof(in) - 1, max, 0, want, __LINE__)

void test_sse_single_event(void) {
  EXPECT("data: hello\n\n", "message(hello)\n");
  EXPECT("data: hello world \n\n", "message(hello world )\n");
}

void test_sse_several_events_in_one_chunk(void) {
  EXPECT("data: a\n\ndata: b\n\n\ndata: c\n\n", "message(a)\nmessage(b)\nmessage(c)\n");
}

void test_sse_multi_line_data(void) {
  EXPECT("data: a\ndata: b\ndata:  c\n\n", "message(a\\nb\\n c)\n");
  EXPECT("data: {\"a\":\ndata: 1}\n\n", "message({\"a\":\\n1})\n");
}

void test_sse_event_field_sets_type_for_one_event(void) {
  EXPECT("event: update\ndata: x\n\ndata: y\n\n", "update(x)\nmessage(y)\n");
  EXPECT("data: x\nevent: late\n\n", "late(x)\n");                 /* any place in the event */
  EXPECT("event: a\nevent: b\ndata: x\n\n", "b(x)\n");            /* the last one wins */
  EXPECT("event: lost\n\ndata: y\n\n", "message(y)\n");           /* reset without dispatch */
  EXPECT("event:\ndata: z\n\nevent\ndata: z\n\n", "message(z)\nmessage(z)\n"); /* empty type */
}

void test_sse_id_persists_and_id_with_nul_is_ignored(void) {
  EXPECT("id: 1\ndata: a\n\ndata: b\n\n", "message(a) id=1\nmessage(b) id=1\n");
  EXPECT("id: 1\ndata: a\n\nid: 2\0x\ndata: b\n\n", "message(a) id=1\nmessage(b) id=1\n");
  EXPECT("id: 5\n\ndata: e\n\n", "message(e) id=5\n"); /* set by an event never dispatched */
  EXPECT("id: 1\ndata: a\n\nid\ndata: b\n\nid: 3\ndata: c\n\nid:\ndata: d\n\n",
         "message(a) id=1\nmessage(b)\nmessage(c) id=3\nmessage(d)\n"); /* an empty id resets */
  EXPECT("id: x\ndata: a\nid: y\n\n", "message(a) id=y\n");
}

void test_sse_retry_takes_only_ascii_digits(void) {
  EXPECT("retry: 3000\ndata: a\n\nretry: 12x\ndata: b\n\nretry:\ndata: c\n\n"
         "retry: -5\ndata: d\n\nretry: +7\ndata: e\n\nretry: 1 \ndata: f\n\nretry: 0\ndata: g\n\n",
         "message(a) retry=3000\nmessage(b) retry=3000\nmessage(c) retry=3000\n"
         "message(d) retry=3000\nmessage(e) retry=3000\nmessage(f) retry=3000\nmessage(g) retry=0\n");
  EXPECT("data: a\n\n", "message(a)\n"); /* -1 until one is given */
  char want[64];
  snprintf(want, sizeof want, "message(a) retry=%ld\n", LONG_MAX);
  EXPECT("retry: 99999999999999999999999999\ndata: a\n\n", want); /* saturates */
}

void test_sse_comments_are_ignored(void) {
  EXPECT(": ping\ndata: a\n: another comment\ndata: b\n\n:\n\n: only a comment\n\n", "message(a\\nb)\n");
  EXPECT(":data: x\n\n", "");
}

void test_sse_line_endings_lf_crlf_cr_mixed(void) {
  EXPECT("data: a\r\n\r\n", "message(a)\n");
  EXPECT("data: a\r\rdata: b\r\r", "message(a)\nmessage(b)\n");
  EXPECT("data: a\r\ndata: b\ndata: c\rdata: d\n\r\n", "message(a\\nb\\nc\\nd)\n");
  EXPECT("data: a\n\r\ndata: b\r\n\ndata: c\r\r\n", "message(a)\nmessage(b)\nmessage(c)\n");
  EXPECT("data: a\n\rdata: b\r\n\r", "message(a)\nmessage(b)\n"); /* LF then a lone CR: two ends */
  EXPECT("data: a\n\r\r\n\n", "message(a)\n");
}

void test_sse_cr_at_chunk_end_then_lf(void) {
  recorder r = {0};
  put(&r, "", 0);
  lh_sse *p = lh_sse_new(record, &r, 0);
  CHECK(lh_sse_feed(p, "data: a\r", 8) == 0);
  CHECK(lh_sse_feed(p, "\ndata: b\r", 9) == 0); /* that LF ends no second line */
  CHECK(lh_sse_feed(p, "\n", 1) == 0);
  CHECK(r.events == 0);
  CHECK(lh_sse_feed(p, "\r", 1) == 0); /* an empty line: dispatches */
  CHECK_STR(r.s, "message(a\\nb)\n");
  CHECK(lh_sse_feed(p, "\n", 1) == 0);
  CHECK(lh_sse_feed(p, "\r", 1) == 0); /* CR then CR: two line ends */
  CHECK(lh_sse_feed(p, "\r", 1) == 0);
  CHECK(lh_sse_feed(p, "data: c\r", 8) == 0);
  CHECK(lh_sse_feed(p, "\r", 1) == 0);
  CHECK_STR(r.s, "message(a\\nb)\nmessage(c)\n");
  lh_sse_free(p);
  free(r.s);
}

void test_sse_bom_only_at_the_start(void) {
  EXPECT("\xEF\xBB\xBF" "data: a\n\n", "message(a)\n");
  EXPECT("\xEF\xBB\xBF" ": c\ndata: a\n\n", "message(a)\n");
  EXPECT("\xEF\xBB\xBF\xEF\xBB\xBF" "data: a\n\ndata: b\n\n", "message(b)\n"); /* field "\uFEFFdata" */
  EXPECT("data: a\n\n\xEF\xBB\xBF" "data: b\n\ndata: c\n\n", "message(a)\nmessage(c)\n");
  EXPECT("\xEF\xBB" "data: a\n\ndata: b\n\n", "message(b)\n"); /* half a BOM stays in the line */
  EXPECT("\xEF" "data: a\n\ndata: b\n\n", "message(b)\n");
  EXPECT("\xEF\xBB\n" "data: b\n\n", "message(b)\n");
  EXPECT("\xEF\xBB\xBF", "");
  EXPECT("\xEF\xBB\xBF\n" "data: b\n\n", "message(b)\n");
  EXPECT("data: \xEF\xBB\xBF\n\n", "message(\\xef\\xbb\\xbf)\n");
}

void test_sse_no_space_after_colon(void) {
  EXPECT("data:a\ndata:  b\ndata: \n\n", "message(a\\n b\\n)\n");
  EXPECT("event:x\nid:7\ndata:a\n\n", "x(a) id=7\n");
  EXPECT("data:a:b: c\n\n", "message(a:b: c)\n"); /* only the first colon splits */
}

void test_sse_field_without_colon(void) {
  EXPECT("data\ndata\n\n", "message(\\n)\n");
  EXPECT("event\ndata: x\n\n", "message(x)\n");
  EXPECT("unknown\ndata: x\nDATA: y\nData: z\ndata : w\n\n", "message(x)\n"); /* case and space matter */
}

void test_sse_empty_data_line_is_dispatched(void) {
  EXPECT("data:\n\n", "message()\n");
  EXPECT("data\n\n", "message()\n");
  EXPECT("data: \n\n", "message()\n");
  EXPECT("event: e\ndata:\n\n", "e()\n");
}

void test_sse_blank_lines_only_give_no_events(void) {
  EXPECT("\n\n\r\n\r\r\n\n", "");
  EXPECT("", "");
  EXPECT("event: x\n\nid: 1\n\nretry: 5\n\n: c\n\n", "");
}

void test_sse_incomplete_trailing_event_is_not_dispatched(void) {
  EXPECT("data: a\n\ndata: b\n", "message(a)\n");
  EXPECT("data: a\n\ndata: b", "message(a)\n");
  EXPECT("data: a\n\ndata: b\r", "message(a)\n");
}

void test_sse_split_anywhere_gives_the_same_events(void) {
  static const char in[] =
      "\xEF\xBB\xBF: stream start\r\nretry: 250\r\nid: ev-1\r\nevent: first\r\ndata: line one\r\n"
      "data:line two\r\n\r\n:keepalive\rdata: {\"k\": [1, 2]}\r\rid\nevent\ndata\n\n"
      "id: z\0z\nid: 9\ndata: last\n\r\n\r\r\ndata: never dispatched";
  EXPECT(in, "first(line one\\nline two) id=ev-1 retry=250\nmessage({\"k\": [1, 2]}) id=ev-1 retry=250\n"
             "message() retry=250\nmessage(last) id=9 retry=250\n");
  /* and every cut into three parts */
  char *whole = run(in, sizeof in - 1, 0, 0, sizeof in, 0);
  size_t len = sizeof in - 1;
  int bad = 0;
  for (size_t a = 1; a < len && !bad; a++) {
    for (size_t b = a + 1; b < len && !bad; b++) {
      recorder r = {0};
      put(&r, "", 0);
      lh_sse *p = lh_sse_new(record, &r, 0);
      CHECK(lh_sse_feed(p, in, a) == 0);
      CHECK(lh_sse_feed(p, in + a, b - a) == 0);
      CHECK(lh_sse_feed(p, in + b, len - b) == 0);
      if (strcmp(r.s, whole) != 0) {
        fprintf(stderr, "  cut at %zu and %zu gave\n%s", a, b, r.s);
        bad = 1;
      }
      lh_sse_free(p);
      free(r.s);
    }
  }
  CHECK(!bad);
  free(whole);
}

void test_sse_letta_stream(void) {
  EXPECT("data: {\"id\":\"ping-1\",\"message_type\":\"ping\",\"run_id\":\"run-1\",\"seq_id\":0}\n\n"
         "data: {\"id\":\"message-1\",\"message_type\":\"reasoning_message\",\"reasoning\":\"Thinking\"}\n\n"
         "data: {\"id\":\"message-2\",\"message_type\":\"assistant_message\",\"content\":\"Hi \xc3\xa9!\\n\"}\n\n"
         "data: {\"message_type\":\"stop_reason\",\"stop_reason\":\"end_turn\"}\n\n"
         "data: {\"message_type\":\"usage_statistics\",\"completion_tokens\":12,\"total_tokens\":40}\n\n"
         "data: [DONE]\n\n",
         "message({\"id\":\"ping-1\",\"message_type\":\"ping\",\"run_id\":\"run-1\",\"seq_id\":0})\n"
         "message({\"id\":\"message-1\",\"message_type\":\"reasoning_message\",\"reasoning\":\"Thinking\"})\n"
         "message({\"id\":\"message-2\",\"message_type\":\"assistant_message\",\"content\":\"Hi \\xc3\\xa9!\\\\n\"})\n"
         "message({\"message_type\":\"stop_reason\",\"stop_reason\":\"end_turn\"})\n"
         "message({\"message_type\":\"usage_statistics\",\"completion_tokens\":12,\"total_tokens\":40})\n"
         "message([DONE])\n");
}

void test_sse_letta_error_event(void) {
  EXPECT("data: {\"message_type\":\"stop_reason\",\"stop_reason\":\"llm_api_error\"}\n\n"
         "event: error\ndata: {\"message_type\":\"error_message\",\"error_type\":\"llm_error\","
         "\"message\":\"An error occurred\"}\n\n"
         "data: [DONE]\n\n",
         "message({\"message_type\":\"stop_reason\",\"stop_reason\":\"llm_api_error\"})\n"
         "error({\"message_type\":\"error_message\",\"error_type\":\"llm_error\",\"message\":\"An error occurred\"})\n"
         "message([DONE])\n");
}

void test_sse_over_limit_returns_etoobig(void) {
  /* a line over the limit, complete or not */
  EXPECT_MAX("data: a\n\ndata:0123456789\n\n", 10, "message(a)\nrc=-1\n");
  EXPECT_MAX("data: a\n\n:0123456789", 10, "message(a)\nrc=-1\n");
  EXPECT_MAX(":123456789\n\n", 10, ""); /* exactly the limit */
  /* data over the limit, counting the '\n' between lines but not the stripped last one */
  EXPECT_MAX("data:abcd\ndata:efghi\n\n", 10, "message(abcd\\nefghi)\n");
  EXPECT_MAX("data:abcd\ndata:efghij\n\n", 10, "rc=-1\n");
  EXPECT_MAX("data:abcd\ndata:efghi\ndata\n\n", 10, "rc=-1\n");
  EXPECT_MAX("data:abc\ndata:def\ndata:ghi\n\n", 10, "rc=-1\n"); /* short lines, long data */
  EXPECT_MAX("data:abcd\n\ndata:efghi\n\ndata:abcde\n\n", 10, "message(abcd)\nmessage(efghi)\nmessage(abcde)\n");
  CHECK(LH_SSE_ETOOBIG == -1 && LH_SSE_ENOMEM == -2);
  /* the default limit is 16 MiB */
  size_t big = (size_t)16 << 20;
  char *in = malloc(big + 16);
  memcpy(in, "data:", 5);
  memset(in + 5, 'x', big - 5);
  memcpy(in + big, "\n\n", 2);
  recorder r = {0};
  put(&r, "", 0);
  lh_sse *p = lh_sse_new(record, &r, 0);
  CHECK(lh_sse_feed(p, in, big + 2) == 0);
  CHECK(r.events == 1);
  lh_sse_free(p);
  free(r.s);
  memset(in + 5, 'x', big - 4);
  memcpy(in + big + 1, "\n\n", 2);
  memset(&r, 0, sizeof r);
  p = lh_sse_new(record, &r, 0);
  CHECK(lh_sse_feed(p, in, big - 10) == 0);
  CHECK(lh_sse_feed(p, in + big - 10, 13) == LH_SSE_ETOOBIG);
  CHECK(r.events == 0);
  lh_sse_free(p);
  free(in);
}

void test_sse_callback_non_zero_stops(void) {
  expect("data: a\n\ndata: b\n\ndata: c\n\n", 27, 0, 2, "message(a)\nmessage(b)\nrc=7\n", __LINE__);
  expect("data: a\n\n", 9, 0, 1, "message(a)\nrc=7\n", __LINE__);
}

void test_sse_new_and_free_edge_cases(void) {
  lh_sse_free(NULL);
  recorder r = {0};
  lh_sse *p = lh_sse_new(record, &r, 0);
  CHECK(p != NULL);
  CHECK(lh_sse_feed(p, NULL, 0) == 0);
  CHECK(lh_sse_feed(p, "data: x", 7) == 0);
  lh_sse_free(p); /* drops the partial line */
  CHECK(r.events == 0);
}

void test_sse_large_event_in_small_chunks(void) {
  size_t n = 1 << 20;
  char *in = malloc(n + 16);
  memcpy(in, "data: ", 6);
  for (size_t i = 6; i < n; i++) in[i] = (char)('a' + i % 26);
  memcpy(in + n, "\n\n", 2);
  recorder r = {0};
  put(&r, "", 0);
  lh_sse *p = lh_sse_new(record, &r, 0);
  for (size_t at = 0; at < n + 2; at += 1000) CHECK(lh_sse_feed(p, in + at, at + 1000 > n + 2 ? n + 2 - at : 1000) == 0);
  CHECK(r.events == 1);
  CHECK(r.len == strlen("message()\n") + n - 6);
  CHECK(memcmp(r.s + 8, in + 6, n - 6) == 0);
  lh_sse_free(p);
  free(r.s);
  free(in);
}
