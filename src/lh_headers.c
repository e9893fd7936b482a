/* HTTP response header lines -> (name, value) pairs: see lh_headers.h. */
#include "lh_headers.h"

#include <string.h>

int lh_headers_parse(const char *s, size_t len, lh_header_fn fn, void *ud) {
  const char *p = s, *end = s ? s + len : NULL;
  while (p && p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (colon && colon > p) {
      const char *v = colon + 1, *ve = eol;
      while (v < ve && (*v == ' ' || *v == '\t')) v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ')) ve--;
      int rc = fn(ud, p, (size_t)(colon - p), v, (size_t)(ve - v));
      if (rc) return rc;
    }
    if (eol == end) break; /* (not p = end + 1: past the one-past-the-end pointer) */
    p = eol + 1;
  }
  return 0;
}
