/* Incremental Server-Sent Events parser (WHATWG HTML, "event stream interpretation"). Complete
 * lines are parsed in place in the caller's chunk; only a line cut by a chunk boundary is copied.
 * The data, type and id buffers grow as needed and are reused for every event. */
#include "lh_sse.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "lh_util.h"

#define LH_SSE_DEFAULT_MAX ((size_t)16 << 20)

struct lh_sse {
  lh_sse_callback cb;
  void *ud;
  size_t max;  /* bound on one line and on one event's data */
  lh_buf line; /* a partial line carried over from the previous chunk */
  lh_buf data; /* every data value of the current event, each followed by '\n' */
  lh_buf type; /* the event type buffer; empty means "message" */
  lh_buf id;   /* the last event id buffer: persists across events */
  long retry;
  int bom;     /* BOM bytes matched at the start of the stream; -1 once past the start */
  int skip_lf; /* the last chunk ended in a CR line end: a leading LF completes that CRLF */
  int err;     /* the final result, once non-zero */
};

static const unsigned char bom_bytes[3] = {0xEF, 0xBB, 0xBF};

/* lh_buf_add with the parser's error code. */
static int buf_append(lh_buf *b, const char *s, size_t n) {
  return lh_buf_add(b, s, n) ? LH_SSE_ENOMEM : 0;
}

/* Adds to the carried-over partial line, which may not outgrow the limit. */
static int line_append(lh_sse *p, const char *s, size_t n) {
  if (n > p->max - p->line.len) return LH_SSE_ETOOBIG;
  return buf_append(&p->line, s, n);
}

/* The empty line: dispatches the event if it has data, and starts the next one either way. */
static int dispatch(lh_sse *p) {
  if (p->data.len == 0) {
    lh_buf_reset(&p->type);
    return 0;
  }
  p->data.data[--p->data.len] = '\0'; /* the '\n' after the last data line */
  lh_sse_event ev;
  ev.event = p->type.len ? p->type.data : "message";
  ev.data = p->data.data;
  ev.data_len = p->data.len;
  ev.id = p->id.data ? p->id.data : "";
  ev.retry = p->retry;
  int rc = p->cb(p->ud, &ev); /* (which may not feed the parser: the buffers stay as they are) */
  lh_buf_reset(&p->data);
  lh_buf_reset(&p->type);
  return rc;
}

static int field_is(const char *name, size_t n, const char *want) {
  return n == strlen(want) && memcmp(name, want, n) == 0;
}

static int process_line(lh_sse *p, const char *s, size_t n) {
  if (n > p->max) return LH_SSE_ETOOBIG;
  if (n == 0) return dispatch(p);
  if (s[0] == ':') return 0; /* a comment */
  const char *colon = memchr(s, ':', n);
  size_t name_len = colon ? (size_t)(colon - s) : n;
  const char *v = colon ? colon + 1 : s + n;
  size_t vlen = colon ? n - name_len - 1 : 0;
  if (vlen && *v == ' ') v++, vlen--;

  if (field_is(s, name_len, "data")) {
    /* the event would be dispatched with at least data.len + vlen bytes */
    if (p->data.len > p->max || vlen > p->max - p->data.len) return LH_SSE_ETOOBIG;
    if (lh_buf_add(&p->data, v, vlen) || lh_buf_addc(&p->data, '\n')) return LH_SSE_ENOMEM;
  } else if (field_is(s, name_len, "event")) {
    lh_buf_reset(&p->type);
    return buf_append(&p->type, v, vlen);
  } else if (field_is(s, name_len, "id")) {
    if (memchr(v, '\0', vlen)) return 0;
    lh_buf_reset(&p->id);
    return buf_append(&p->id, v, vlen);
  } else if (field_is(s, name_len, "retry")) {
    long r = 0;
    if (vlen == 0) return 0;
    for (size_t i = 0; i < vlen; i++) {
      if (v[i] < '0' || v[i] > '9') return 0;
      int d = v[i] - '0';
      r = r > (LONG_MAX - d) / 10 ? LONG_MAX : r * 10 + d; /* saturates */
    }
    p->retry = r;
  }
  return 0; /* other fields are ignored */
}

static size_t find(const char *buf, size_t from, size_t len, char c) {
  const char *hit = memchr(buf + from, c, len - from);
  return hit ? (size_t)(hit - buf) : len;
}

static int feed(lh_sse *p, const char *buf, size_t len) {
  size_t i = 0;
  if (p->bom >= 0) {
    while (i < len && p->bom < 3 && (unsigned char)buf[i] == bom_bytes[p->bom]) i++, p->bom++;
    if (p->bom < 3 && i == len) return 0; /* the chunk ended inside what may be a BOM */
    int matched = p->bom;
    p->bom = -1;
    /* not a BOM after all: the bytes matched so far begin the first line */
    if (matched < 3 && matched > 0) {
      int rc = line_append(p, (const char *)bom_bytes, (size_t)matched);
      if (rc) return rc;
    }
  }
  if (p->skip_lf && i < len) {
    if (buf[i] == '\n') i++;
    p->skip_lf = 0;
  }
  /* lf and cr cache the next LF and CR from i on, so each memchr scans a byte once */
  size_t lf = find(buf, i, len, '\n'), cr = find(buf, i, len, '\r');
  while (i < len) {
    if (lf < i) lf = find(buf, i, len, '\n');
    if (cr < i) cr = find(buf, i, len, '\r');
    size_t eol = lf < cr ? lf : cr;
    if (eol == len) return line_append(p, buf + i, len - i);
    int rc;
    if (p->line.len) {
      rc = line_append(p, buf + i, eol - i);
      if (rc == 0) rc = process_line(p, p->line.data, p->line.len);
      lh_buf_reset(&p->line);
    } else {
      rc = process_line(p, buf + i, eol - i);
    }
    if (rc) return rc;
    i = eol + 1;
    if (buf[eol] == '\r') {
      if (i == len) p->skip_lf = 1;
      else if (buf[i] == '\n') i++;
    }
  }
  return 0;
}

lh_sse *lh_sse_new(lh_sse_callback cb, void *ud, size_t max_event_bytes) {
  lh_sse *p = calloc(1, sizeof *p);
  if (!p) return NULL;
  p->cb = cb;
  p->ud = ud;
  p->max = max_event_bytes ? max_event_bytes : LH_SSE_DEFAULT_MAX;
  p->retry = -1;
  return p;
}

int lh_sse_feed(lh_sse *p, const char *buf, size_t len) {
  if (p->err || len == 0) return p->err;
  p->err = feed(p, buf, len);
  return p->err;
}

void lh_sse_free(lh_sse *p) {
  if (!p) return;
  lh_buf_free(&p->line);
  lh_buf_free(&p->data);
  lh_buf_free(&p->type);
  lh_buf_free(&p->id);
  free(p);
}
