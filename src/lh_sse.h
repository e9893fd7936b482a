/* Incremental Server-Sent Events parser: the WHATWG "event stream interpretation" rules, fed
 * arbitrary chunks (as libcurl's write callback delivers them). Pure C, never calls Lua. */
#ifndef LH_SSE_H
#define LH_SSE_H

#include <stddef.h>

#define LH_SSE_ETOOBIG (-1) /* a line, or an event's data, longer than max_event_bytes */
#define LH_SSE_ENOMEM (-2)

typedef struct lh_sse_event {
  const char *event; /* "message" when no event: field was given */
  const char *data;  /* data lines joined with '\n' (no trailing newline), NUL-terminated */
  size_t data_len;
  const char *id; /* last event id seen so far in the stream, "" if none */
  long retry;     /* last valid retry: value in ms, -1 if none */
} lh_sse_event;

/* Called once per complete event; pointers are valid only during the call. Return 0 to go on,
 * non-zero to stop parsing (lh_sse_feed then returns that value). The callback must not feed or
 * free the parser that called it. */
typedef int (*lh_sse_callback)(void *ud, const lh_sse_event *ev);

typedef struct lh_sse lh_sse; /* opaque */

/* A parser calling cb(ud, event) per event; the caller frees it with lh_sse_free. NULL on OOM.
 * max_event_bytes bounds both one line and one event's data; 0 means the default, 16 MiB. */
lh_sse *lh_sse_new(lh_sse_callback cb, void *ud, size_t max_event_bytes);

/* Parses buf[0..len), dispatching every event it completes; keeps a trailing partial line for the
 * next call. Returns 0; LH_SSE_ETOOBIG; LH_SSE_ENOMEM; or the callback's non-zero value. Any
 * non-zero result is final: the rest of buf is dropped and later calls return the same value. */
int lh_sse_feed(lh_sse *p, const char *buf, size_t len);

/* Frees the parser and its buffers; an incomplete trailing event is dropped. NULL-safe. */
void lh_sse_free(lh_sse *p);

#endif
