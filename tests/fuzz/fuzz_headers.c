/* libFuzzer target for the HTTP response-header parser (src/lh_headers.c, behind
 * request:headers()): arbitrary bytes as libcurl's header buffer. Every pair must lie inside the
 * input, with a non-empty name holding no ':' or LF and a trimmed value holding no LF; the pairs
 * must be exactly those a plain line-by-line reading finds; a callback that stops must stop it. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lh_headers.h"

typedef struct {
  const char *in;
  size_t len;
  int calls, stop_at;
  const char *ref; /* the expected pairs, as "name\0value\0" with lengths first */
  size_t ref_at, ref_len;
} state;

static int check(void *ud, const char *name, size_t nlen, const char *value, size_t vlen) {
  state *st = ud;
  if (name < st->in || nlen == 0 || name + nlen > st->in + st->len) abort();
  if (value < st->in || value + vlen > st->in + st->len) abort();
  if (memchr(name, ':', nlen) || memchr(name, '\n', nlen) || memchr(value, '\n', vlen)) abort();
  if (vlen && (value[0] == ' ' || value[0] == '\t')) abort();
  if (vlen && (value[vlen - 1] == '\r' || value[vlen - 1] == ' ')) abort();
  if (st->ref) { /* compare with the reference reading */
    size_t n[2];
    if (st->ref_at + sizeof n > st->ref_len) abort();
    memcpy(n, st->ref + st->ref_at, sizeof n);
    st->ref_at += sizeof n;
    if (n[0] != nlen || n[1] != vlen || memcmp(st->ref + st->ref_at, name, nlen) ||
        memcmp(st->ref + st->ref_at + nlen, value, vlen))
      abort();
    st->ref_at += nlen + vlen;
  }
  st->calls++;
  return st->stop_at && st->calls >= st->stop_at ? 5 : 0;
}

/* The reference: split on LF, take lines whose first ':' is not at 0, trim as documented. */
static char *reference(const char *in, size_t len, size_t *out_len) {
  char *out = malloc(len + 2 * sizeof(size_t) * (len + 1)), *o = out; /* pairs <= lines */
  size_t start = 0;
  for (size_t i = 0; i <= len; i++) {
    if (i < len && in[i] != '\n') continue;
    const char *line = in + start;
    size_t llen = i - start, c = 0;
    while (c < llen && line[c] != ':') c++;
    if (c < llen && c > 0) {
      size_t v = c + 1, ve = llen;
      while (v < ve && (line[v] == ' ' || line[v] == '\t')) v++;
      while (ve > v && (line[ve - 1] == '\r' || line[ve - 1] == ' ')) ve--;
      size_t n[2] = {c, ve - v};
      memcpy(o, n, sizeof n), o += sizeof n;
      memcpy(o, line, c), o += c;
      memcpy(o, line + v, ve - v), o += ve - v;
    }
    start = i + 1;
  }
  *out_len = (size_t)(o - out);
  return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  /* an exact-size copy, so that ASan sees any read past the end */
  char *in = malloc(size ? size : 1);
  if (size) memcpy(in, data, size);
  size_t ref_len;
  char *ref = reference(in, size, &ref_len);
  state st = {in, size, 0, 0, ref, 0, ref_len};
  if (lh_headers_parse(in, size, check, &st) != 0) abort();
  if (st.ref_at != ref_len) abort(); /* every expected pair was reported */
  int all = st.calls;
  if (all > 0) { /* stopping at pair k returns the callback's code after exactly k calls */
    state stop = {in, size, 0, 1 + (int)(size % (size_t)all), NULL, 0, 0};
    if (lh_headers_parse(in, size, check, &stop) != 5 || stop.calls != stop.stop_at) abort();
  }
  free(ref);
  free(in);
  return 0;
}
