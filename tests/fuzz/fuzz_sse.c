/* libFuzzer target for the SSE parser: the input is a stream, fed whole, byte by byte and in
 * chunks whose sizes derive from its first bytes; every way must give the same events and result.
 * Without a limit, the events must also match a plain whole-input reading of the WHATWG rules. */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lh_sse.h"

typedef struct {
  char *s;
  size_t len, cap;
  int events, stop_at;
} out_t;

static void put(out_t *o, const void *s, size_t n) {
  if (o->len + n > o->cap) {
    while (o->len + n > o->cap) o->cap = o->cap ? o->cap * 2 : 1024;
    o->s = realloc(o->s, o->cap);
    if (!o->s) abort();
  }
  if (n) memcpy(o->s + o->len, s, n);
  o->len += n;
}

/* event NUL data NUL id NUL retry: unambiguous, as event and id hold no NUL and data has a length */
static void put_event(out_t *o, const char *event, const char *data, size_t data_len, const char *id,
                      long retry) {
  put(o, event, strlen(event) + 1);
  put(o, &data_len, sizeof data_len);
  put(o, data, data_len);
  put(o, id, strlen(id) + 1);
  put(o, &retry, sizeof retry);
}

static int record(void *ud, const lh_sse_event *ev) {
  out_t *o = ud;
  if (ev->data[ev->data_len] != '\0') abort();
  put_event(o, ev->event, ev->data, ev->data_len, ev->id, ev->retry);
  o->events++;
  return o->stop_at && o->events >= o->stop_at ? 7 : 0;
}

static uint32_t next(uint32_t *state) {
  *state = *state * 1664525u + 1013904223u;
  return *state >> 8;
}

/* mode 0: whole; 1: byte by byte; 2: chunks of pseudo-random sizes from seed */
static out_t parse(const uint8_t *in, size_t len, size_t max, int stop_at, int mode, uint32_t seed) {
  out_t o = {0};
  o.stop_at = stop_at;
  lh_sse *p = lh_sse_new(record, &o, max);
  if (!p) abort();
  int rc = 0;
  for (size_t at = 0; at < len && rc == 0;) {
    size_t n = mode == 0 ? len : mode == 1 ? 1 : 1 + next(&seed) % (1 + seed % 97);
    if (n > len - at) n = len - at;
    rc = lh_sse_feed(p, (const char *)in + at, n);
    at += n;
  }
  if (rc && lh_sse_feed(p, "\n\n", 2) != rc) abort(); /* failures are final */
  put(&o, "rc", 2);
  put(&o, &rc, sizeof rc);
  lh_sse_free(p);
  return o;
}

/* The rules read straight from the spec over the whole input, with no limit and no stop. */
static out_t reference(const uint8_t *in, size_t len) {
  out_t o = {0};
  char *data = malloc(2 * len + 2), *type = malloc(len + 1), *id = malloc(len + 1);
  size_t dlen = 0, tlen = 0, ilen = 0;
  long retry = -1;
  const char *s = (const char *)in, *end = s + len;
  if (len >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3;
  id[0] = 0;
  for (;;) {
    const char *e = s;
    while (e < end && *e != '\r' && *e != '\n') e++;
    if (e == end) break; /* an unterminated last line is never processed */
    size_t n = (size_t)(e - s);
    if (n == 0) {
      if (dlen) {
        data[dlen - 1] = 0;
        type[tlen] = 0;
        put_event(&o, tlen ? type : "message", data, dlen - 1, id, retry);
      }
      dlen = tlen = 0;
    } else if (s[0] != ':') {
      size_t name = 0;
      while (name < n && s[name] != ':') name++;
      const char *v = s + name + (name < n);
      size_t vlen = name < n ? n - name - 1 : 0;
      if (vlen && v[0] == ' ') v++, vlen--;
      if (name == 4 && !memcmp(s, "data", 4)) {
        memcpy(data + dlen, v, vlen);
        dlen += vlen;
        data[dlen++] = '\n';
      } else if (name == 5 && !memcmp(s, "event", 5)) {
        memcpy(type, v, vlen);
        tlen = vlen;
      } else if (name == 2 && !memcmp(s, "id", 2) && !memchr(v, 0, vlen)) {
        memcpy(id, v, vlen);
        id[ilen = vlen] = 0;
      } else if (name == 5 && !memcmp(s, "retry", 5) && vlen) {
        size_t k = 0;
        while (k < vlen && v[k] >= '0' && v[k] <= '9') k++;
        if (k == vlen) {
          retry = 0;
          for (k = 0; k < vlen; k++) {
            int d = v[k] - '0';
            retry = retry > (LONG_MAX - d) / 10 ? LONG_MAX : retry * 10 + d;
          }
        }
      }
    }
    s = e + 1;
    if (*e == '\r' && s < end && *s == '\n') s++;
  }
  (void)ilen;
  int rc = 0;
  put(&o, "rc", 2);
  put(&o, &rc, sizeof rc);
  free(data);
  free(type);
  free(id);
  return o;
}

static void same(out_t *a, out_t *b) {
  if (a->len != b->len || memcmp(a->s, b->s, a->len) != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *in, size_t len) {
  uint32_t seed = 2166136261u; /* FNV-1a of the first 8 bytes */
  for (size_t i = 0; i < len && i < 8; i++) seed = (seed ^ in[i]) * 16777619u;

  /* the default limit (never reached by fuzz-sized inputs), no stop: also check the reference */
  out_t whole = parse(in, len, 0, 0, 0, 0);
  out_t bytes = parse(in, len, 0, 0, 1, 0);
  out_t chunks = parse(in, len, 0, 0, 2, seed);
  out_t ref = reference(in, len);
  same(&whole, &bytes);
  same(&whole, &chunks);
  same(&whole, &ref);
  free(whole.s), free(bytes.s), free(chunks.s), free(ref.s);

  /* a small limit and a callback that stops after a few events */
  size_t max = 1 + seed % 64;
  int stop_at = (int)(seed >> 8) % 6;
  whole = parse(in, len, max, stop_at, 0, 0);
  bytes = parse(in, len, max, stop_at, 1, 0);
  chunks = parse(in, len, max, stop_at, 2, seed ^ 0x9e3779b9u);
  same(&whole, &bytes);
  same(&whole, &chunks);
  free(whole.s), free(bytes.s), free(chunks.s);
  return 0;
}
