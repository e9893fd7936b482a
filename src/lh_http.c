/* letta.http: HTTP transfers for Lua over libcurl's multi interface, never blocking Lua for long.
 * A session is one multi handle (its connections are kept alive and reused); a request is one
 * transfer. C buffers everything (body, headers, SSE events) and Lua only ever pulls results, so a
 * Lua error can never unwind through libcurl's stack: no Lua runs inside a curl callback. */
#include "lh_http.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <time.h>

#include "lauxlib.h"
#include "lettash.h"
#include "lh_curl.h"
#include "lh_headers.h"
#include "lh_sse.h"
#include "lh_util.h"

#define SESSION_MT "letta.http.Session"
#define REQUEST_MT "letta.http.Request"
#define SESSIONS_KEY "letta.http.sessions" /* registry: set of open sessions (weak keys) */
#define NOTIFY_KEY "letta.http.notify"     /* registry: requests with news for the scheduler */
#define POOL_MAX 128
#define STREAM_PAUSE_BYTES (4 << 20) /* pause a stream whose unread events reach this */

typedef struct {
  char *data;
  size_t len, cap;
} Buf;

typedef struct Event {
  struct Event *next;
  char *event, *data, *id;
  size_t data_len;
} Event;

typedef struct Session Session;

typedef struct Request {
  Session *s; /* NULL once the session is closed */
  struct Request *prev, *next; /* the session's running requests */
  int ref; /* registry reference pinning the userdata while it runs */
  CURL *easy; /* only while running */
  struct curl_slist *headers; /* own list when the caller added headers */
  int state; /* REQ_* */
  int notify; /* report completion and events through NOTIFY_KEY */
  int queued; /* already in the notify list */
  int paused;
  int checked; /* a stream's status was looked at */
  int once;    /* must not be sent twice (not safe to repeat) */
  int kept;    /* the next close is skipped (request:keep) */
  int sends;   /* times libcurl was about to send it */
  CURLcode result;
  long status;
  size_t max_body;
  int too_big;
  Buf body, head;
  lh_sse *sse;
  Event *first, *last;
  size_t queued_bytes;
  char errbuf[CURL_ERROR_SIZE];
} Request;

enum { REQ_NEW, REQ_RUNNING, REQ_DONE };

struct Session {
  CURLM *multi;
  const lh_curl_api *c;
  struct curl_slist *base;      /* Accept, User-Agent, Authorization: the token lives only here */
  struct curl_slist *base_json; /* the same plus Content-Type: application/json */
  CURL *pool[POOL_MAX];
  int npool;
  int inflight;
  struct Request *running; /* list of running requests */
  long connect_timeout_ms;
  size_t max_body;
  char *ca_file; /* CURLOPT_CAINFO: a CA bundle (PEM) */
  char *ca_path; /* CURLOPT_CAPATH: a directory of hashed CA certificates */
  char *prefix; /* every URL must start with it (the client's base URL + "/"): see l_request */
  int insecure;
  int closed;
};

/* ---------------------------------------------------------------------------------------------
 * Buffers and events */

static int buf_add(Buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1) cap *= 2;
    char *p = (char *)realloc(b->data, cap);
    if (!p) return -1;
    b->data = p;
    b->cap = cap;
  }
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

static void buf_free(Buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

static void event_free(Event *e) {
  free(e->event);
  free(e->data);
  free(e->id);
  free(e);
}

static void events_clear(Request *r) {
  while (r->first) {
    Event *e = r->first;
    r->first = e->next;
    event_free(e);
  }
  r->last = NULL;
  r->queued_bytes = 0;
}

static char *dupn(const char *s, size_t n) {
  char *p = (char *)malloc(n + 1);
  if (p) {
    memcpy(p, s, n);
    p[n] = '\0';
  }
  return p;
}

static int on_sse_event(void *ud, const lh_sse_event *ev) {
  Request *r = (Request *)ud;
  Event *e = (Event *)calloc(1, sizeof *e);
  if (!e) return LH_SSE_ENOMEM;
  e->event = dupn(ev->event, strlen(ev->event));
  e->data = dupn(ev->data, ev->data_len);
  e->id = dupn(ev->id, strlen(ev->id));
  e->data_len = ev->data_len;
  if (!e->event || !e->data || !e->id) {
    event_free(e);
    return LH_SSE_ENOMEM;
  }
  if (r->last) r->last->next = e;
  else r->first = e;
  r->last = e;
  r->queued_bytes += ev->data_len;
  return 0;
}

/* ---------------------------------------------------------------------------------------------
 * libcurl callbacks: C only, never Lua */

static size_t on_body(char *ptr, size_t size, size_t n, void *ud) {
  Request *r = (Request *)ud;
  size_t len = size * n;
  if (r->sse && !r->checked) { /* an error answer to a stream is a plain body, not events */
    long code = 0;
    r->checked = 1;
    if (r->s) r->s->c->curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 300) {
      lh_sse_free(r->sse);
      r->sse = NULL;
    }
  }
  if (r->sse) {
    if (r->queued_bytes >= STREAM_PAUSE_BYTES) { /* the reader is behind: hold the stream */
      r->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
    int rc = lh_sse_feed(r->sse, ptr, len);
    if (rc == LH_SSE_ETOOBIG) r->too_big = 1;
    return rc == 0 ? len : 0;
  }
  if (r->body.len + len > r->max_body) {
    r->too_big = 1;
    return 0; /* makes curl fail the transfer with CURLE_WRITE_ERROR */
  }
  return buf_add(&r->body, ptr, len) == 0 ? len : 0;
}

static size_t on_header(char *ptr, size_t size, size_t n, void *ud) {
  Request *r = (Request *)ud;
  size_t len = size * n;
  /* A new response (after a 100 Continue or a redirect) replaces the headers of the last. */
  if (len > 5 && memcmp(ptr, "HTTP/", 5) == 0) r->head.len = 0;
  return buf_add(&r->head, ptr, len) == 0 ? len : 0;
}

/* libcurl resends a request by itself when a reused connection dies before any answer (a stale
 * keep-alive). For a request that may have been applied (a POST that creates something) that is
 * how duplicates are born: refuse the second send, and report the loss as a reset instead. */
static int on_prereq(void *ud, char *conn_primary_ip, char *conn_local_ip, int conn_primary_port,
                     int conn_local_port) {
  Request *r = (Request *)ud;
  (void)conn_primary_ip, (void)conn_local_ip, (void)conn_primary_port, (void)conn_local_port;
  if (++r->sends > 1 && r->once) return CURL_PREREQFUNC_ABORT;
  return CURL_PREREQFUNC_OK;
}

/* ---------------------------------------------------------------------------------------------
 * Sessions */

static Session *check_session(lua_State *L, int idx) {
  Session *s = (Session *)luaL_checkudata(L, idx, SESSION_MT);
  if (s->closed) luaL_error(L, "attempt to use a closed HTTP session");
  return s;
}

static Request *check_request(lua_State *L, int idx) {
  return (Request *)luaL_checkudata(L, idx, REQUEST_MT);
}

static const char *opt_string(lua_State *L, int t, const char *k, const char *def) {
  lua_getfield(L, t, k);
  const char *v = lua_isnil(L, -1) ? def : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays referenced by the table */
  return v;
}

static lua_Integer opt_integer(lua_State *L, int t, const char *k, lua_Integer def) {
  lua_getfield(L, t, k);
  lua_Integer v = lua_isnil(L, -1) ? def : luaL_checkinteger(L, -1);
  lua_pop(L, 1);
  return v;
}

/* Appends the line a..b. Any length: a fixed buffer here once cut a token over ~1000 bytes (long
 * JWTs), which the server then refused as 401 with nothing to say why. */
static struct curl_slist *slist_add(const lh_curl_api *c, struct curl_slist *l, const char *a,
                                    const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char small[1024], *line = la + lb < sizeof small ? small : (char *)malloc(la + lb + 1);
  if (!line) return l;
  memcpy(line, a, la);
  memcpy(line + la, b, lb + 1);
  struct curl_slist *n = c->curl_slist_append(l, line);
  explicit_bzero(line, la + lb); /* may have held the token (a plain memset can be optimised away) */
  if (line != small) free(line);
  return n ? n : l;
}

/* http.session{user_agent=, token=, token_header=, connect_timeout_ms=, max_body=, ca_file=,
 * ca_path=, insecure=} -> session. The token goes into the Authorization header and is not kept anywhere
 * Lua can read. */
static int l_session(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  const lh_curl_api *c = lh_curl();
  if (!c) return luaL_error(L, "%s", lh_curl_error());
  Session *s = (Session *)lua_newuserdatauv(L, sizeof(Session), 0);
  memset(s, 0, sizeof *s);
  s->closed = 1; /* created closed: nothing to release until fully set up */
  luaL_setmetatable(L, SESSION_MT);
  s->c = c;
  s->connect_timeout_ms = (long)opt_integer(L, 1, "connect_timeout_ms", 10000);
  s->max_body = (size_t)opt_integer(L, 1, "max_body", 64 << 20);
  s->insecure = 0;
  lua_getfield(L, 1, "insecure");
  s->insecure = lua_toboolean(L, -1);
  lua_pop(L, 1);
  const char *ca = opt_string(L, 1, "ca_file", NULL);
  if (ca && !(s->ca_file = strdup(ca))) return luaL_error(L, "out of memory");
  const char *capath = opt_string(L, 1, "ca_path", NULL);
  if (capath && !(s->ca_path = strdup(capath))) return luaL_error(L, "out of memory");
  const char *prefix = opt_string(L, 1, "prefix", NULL);
  if (prefix && !(s->prefix = strdup(prefix))) return luaL_error(L, "out of memory");
  const char *ua = opt_string(L, 1, "user_agent", "lettash/" LETTASH_VERSION);
  const char *token = opt_string(L, 1, "token", NULL);
  struct curl_slist *l = NULL;
  l = slist_add(c, l, "Accept: application/json", "");
  l = slist_add(c, l, "User-Agent: ", ua);
  if (token && *token) l = slist_add(c, l, "Authorization: Bearer ", token);
  lua_getfield(L, 1, "headers"); /* extra "Name: value" lines for every request */
  if (lua_istable(L, -1)) {
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) == LUA_TSTRING; i++) {
      l = slist_add(c, l, lua_tostring(L, -1), "");
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  s->base = l;
  /* The JSON variant is a second list with the same lines: curl_slist has no sharing. */
  struct curl_slist *j = NULL;
  for (struct curl_slist *p = l; p; p = p->next) j = slist_add(c, j, p->data, "");
  s->base_json = slist_add(c, j, "Content-Type: application/json", "");
  s->multi = c->curl_multi_init();
  if (!s->multi || !s->base || !s->base_json) return luaL_error(L, "cannot create HTTP session: out of memory");
  s->closed = 0;
  /* remember it, so http.step() drives every open session */
  lua_getfield(L, LUA_REGISTRYINDEX, SESSIONS_KEY);
  lua_pushvalue(L, -2);
  lua_pushboolean(L, 1);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  return 1;
}

static void request_finish(lua_State *L, Request *r, CURLcode result);

/* Aborts every transfer of the session and releases it. Idempotent; also __gc and __close. */
static int l_session_close(lua_State *L) {
  Session *s = (Session *)luaL_checkudata(L, 1, SESSION_MT);
  if (s->closed) return 0;
  const lh_curl_api *c = s->c;
  lua_getfield(L, LUA_REGISTRYINDEX, SESSIONS_KEY);
  lua_pushvalue(L, 1);
  lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
  while (s->running) { /* abort every transfer still running */
    Request *r = s->running;
    request_finish(L, r, CURLE_ABORTED_BY_CALLBACK);
    snprintf(r->errbuf, sizeof r->errbuf, "the HTTP session was closed");
  }
  for (int i = 0; i < s->npool; i++) c->curl_easy_cleanup(s->pool[i]);
  s->npool = 0;
  if (s->multi) c->curl_multi_cleanup(s->multi);
  c->curl_slist_free_all(s->base);
  c->curl_slist_free_all(s->base_json);
  free(s->ca_file);
  free(s->ca_path);
  free(s->prefix);
  s->prefix = NULL;
  s->multi = NULL;
  s->base = s->base_json = NULL;
  s->ca_file = NULL;
  s->ca_path = NULL;
  s->closed = 1;
  return 0;
}

static int l_session_tostring(lua_State *L) {
  Session *s = (Session *)luaL_checkudata(L, 1, SESSION_MT);
  lua_pushfstring(L, "letta.http.Session (%s, %d in flight)", s->closed ? "closed" : "open", s->inflight);
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Requests */

/* Pins the running request r (its userdata at stack index idx) so that it lives until done, and
 * links it into its session's list of running requests. A registry reference, not a table keyed
 * by request: refs reuse their slots, so thousands of short requests cause no rehashing. */
static void pin(lua_State *L, Session *s, Request *r, int idx) {
  lua_pushvalue(L, idx);
  r->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  r->prev = NULL;
  r->next = s->running;
  if (s->running) s->running->prev = r;
  s->running = r;
}

static void unpin(lua_State *L, Session *s, Request *r) {
  if (r->prev) r->prev->next = r->next;
  else if (s->running == r) s->running = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  luaL_unref(L, LUA_REGISTRYINDEX, r->ref);
  r->ref = LUA_NOREF;
}

/* Adds the request whose userdata is at the top of the stack to the scheduler's notify list. */
static void notify(lua_State *L, Request *r) {
  if (!r->notify || r->queued) return;
  r->queued = 1;
  lua_getfield(L, LUA_REGISTRYINDEX, NOTIFY_KEY);
  lua_pushvalue(L, -2);
  lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
  lua_pop(L, 1);
}

/* The transfer is over: keep its results, give the easy handle back to the pool. */
static void request_finish(lua_State *L, Request *r, CURLcode result) {
  Session *s = r->s;
  if (r->state != REQ_RUNNING) return;
  r->state = REQ_DONE;
  r->result = result;
  if (s && r->easy) {
    const lh_curl_api *c = s->c;
    c->curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
    c->curl_multi_remove_handle(s->multi, r->easy);
    /* drop per-request pointers before pooling: they die with r */
    c->curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    c->curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, (char *)NULL);
    if (s->npool < POOL_MAX) s->pool[s->npool++] = r->easy;
    else c->curl_easy_cleanup(r->easy);
    r->easy = NULL;
    s->inflight--;
  }
  if (r->headers && s) s->c->curl_slist_free_all(r->headers);
  r->headers = NULL;
  if (s && r->ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
    unpin(L, s, r);
    notify(L, r);
    lua_pop(L, 1);
  }
}

static void request_release(lua_State *L, Request *r) {
  if (r->state == REQ_RUNNING) {
    request_finish(L, r, CURLE_ABORTED_BY_CALLBACK);
    snprintf(r->errbuf, sizeof r->errbuf, "the request was closed before it completed");
  }
  buf_free(&r->body);
  buf_free(&r->head);
  events_clear(r);
  lh_sse_free(r->sse);
  r->sse = NULL;
}

static int l_request_close(lua_State *L) {
  Request *r = check_request(L, 1);
  if (r->kept) { /* handed over out of a to-be-closed scope: the new owner closes it */
    r->kept = 0;
    return 0;
  }
  request_release(L, r);
  return 0;
}

/* A new easy handle with the options that stay the same for the whole session. */
static CURL *new_easy(Session *s) {
  const lh_curl_api *c = s->c;
  CURL *e = c->curl_easy_init();
  if (!e) return NULL;
  c->curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  c->curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  c->curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
  c->curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  c->curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, s->connect_timeout_ms);
  c->curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  c->curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  c->curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, s->insecure ? 0L : 1L);
  c->curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, s->insecure ? 0L : 2L);
  if (s->ca_file) c->curl_easy_setopt(e, CURLOPT_CAINFO, s->ca_file);
  if (s->ca_path) c->curl_easy_setopt(e, CURLOPT_CAPATH, s->ca_path);
  return e;
}

/* session:request(method, url, body, headers, timeout_ms, idle_timeout_ms, stream, once), or
 * session:request{method=, url=, body=, headers=, timeout_ms=, idle_timeout_ms=, stream=, once=}
 * -> request, already started. headers: {"Name: value", ...} added to the session's; body: a
 * string (JSON); idle_timeout_ms: for streams, instead of a total timeout; once: never sent twice
 * (see on_prereq). The positional form saves the hot path a table. */
static int l_request(lua_State *L) {
  static const char *const fields[] = {"method", "url", "body", "headers", "timeout_ms",
                                       "idle_timeout_ms", "stream", "once"};
  Session *s = check_session(L, 1);
  const lh_curl_api *c = s->c;
  if (lua_istable(L, 2)) { /* to the positional form: slots 2..9 */
    lua_settop(L, 2);
    for (int i = 0; i < 8; i++) lua_getfield(L, 2, fields[i]);
    lua_remove(L, 2);
    if (lua_isnil(L, 2)) {
      lua_pushliteral(L, "GET");
      lua_replace(L, 2);
    }
  }
  lua_settop(L, 9);
  const char *method = luaL_checkstring(L, 2);
  const char *url = luaL_checkstring(L, 3);
  /* The token goes with every request of the session: only ever to the session's own server. */
  if (s->prefix && strncmp(url, s->prefix, strlen(s->prefix)) != 0)
    return luaL_error(L, "refusing a request outside %s", s->prefix);
  size_t body_len = 0;
  const char *body = luaL_optlstring(L, 4, NULL, &body_len);
  long timeout_ms = (long)luaL_optinteger(L, 6, 0);
  long idle_ms = (long)luaL_optinteger(L, 7, 0);
  int stream = lua_toboolean(L, 8);
  int once = lua_toboolean(L, 9);

  Request *r = (Request *)lua_newuserdatauv(L, sizeof(Request), 3); /* session, body, task */
  memset(r, 0, sizeof *r);
  r->ref = LUA_NOREF;
  r->state = REQ_DONE; /* created finished: nothing to release until started */
  r->result = CURLE_FAILED_INIT;
  luaL_setmetatable(L, REQUEST_MT);
  int ridx = lua_gettop(L);
  lua_pushvalue(L, 1); /* the request keeps its session alive */
  lua_setiuservalue(L, ridx, 1);
  r->s = s;
  r->max_body = s->max_body;
  r->once = once;
  if (stream && !(r->sse = lh_sse_new(on_sse_event, r, s->max_body))) return luaL_error(L, "out of memory");

  struct curl_slist *headers = body ? s->base_json : s->base;
  if (lua_istable(L, 5) && lua_rawlen(L, 5) > 0) {
    for (struct curl_slist *p = headers; p; p = p->next) r->headers = slist_add(c, r->headers, p->data, "");
    for (lua_Integer i = 1; lua_rawgeti(L, 5, i) == LUA_TSTRING; i++) {
      r->headers = slist_add(c, r->headers, lua_tostring(L, -1), "");
      lua_pop(L, 1);
    }
    lua_pop(L, 1);
    headers = r->headers;
  }

  CURL *e = s->npool > 0 ? s->pool[--s->npool] : new_easy(s);
  if (!e) return luaL_error(L, "cannot create a transfer: out of memory");
  /* What changes per request; the rest was set once in new_easy(). */
  c->curl_easy_setopt(e, CURLOPT_URL, url);
  c->curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  c->curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)r);
  c->curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)r);
  c->curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)r);
  c->curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  c->curl_easy_setopt(e, CURLOPT_PREREQDATA, (void *)r);
  c->curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
  /* For streams: an idle timeout (no byte for idle_ms) instead of a total one. */
  c->curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, idle_ms > 0 ? 1L : 0L);
  c->curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, idle_ms > 0 ? (idle_ms + 999) / 1000 : 0L);
  /* Method and body: set on every use, so a pooled handle carries nothing over. */
  int is_get = strcmp(method, "GET") == 0, is_post = strcmp(method, "POST") == 0;
  c->curl_easy_setopt(e, CURLOPT_NOBODY, strcmp(method, "HEAD") == 0 ? 1L : 0L);
  if (body) {
    c->curl_easy_setopt(e, CURLOPT_POST, 1L);
    c->curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    c->curl_easy_setopt(e, CURLOPT_POSTFIELDS, body); /* not copied: the request holds the string */
    lua_pushvalue(L, 4);
    lua_setiuservalue(L, ridx, 2);
  } else if (is_post || !is_get) {
    c->curl_easy_setopt(e, CURLOPT_POST, is_post ? 1L : 0L);
    if (!is_post) c->curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    c->curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    c->curl_easy_setopt(e, CURLOPT_POSTFIELDS, is_post ? "" : (const char *)NULL);
  } else {
    c->curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  }
  c->curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, (is_get || is_post) ? (const char *)NULL : method);

  CURLMcode mc = c->curl_multi_add_handle(s->multi, e);
  if (mc != CURLM_OK) {
    c->curl_easy_cleanup(e);
    return luaL_error(L, "cannot start transfer: %s", c->curl_multi_strerror(mc));
  }
  r->easy = e;
  r->state = REQ_RUNNING;
  r->result = CURLE_OK;
  s->inflight++;
  pin(L, s, r, ridx);
  lua_settop(L, ridx);
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Driving transfers */

/* Runs the session's transfers and finishes the completed ones. */
static void session_perform(lua_State *L, Session *s) {
  const lh_curl_api *c = s->c;
  int running, left;
  c->curl_multi_perform(s->multi, &running);
  CURLMsg *m;
  while ((m = c->curl_multi_info_read(s->multi, &left))) {
    if (m->msg != CURLMSG_DONE) continue;
    Request *r = NULL;
    c->curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    if (r) request_finish(L, r, m->data.result);
  }
}

/* Streams with events not yet seen by the scheduler go on the notify list. */
static void notify_streams(lua_State *L, Session *s) {
  for (Request *r = s->running; r; r = r->next) {
    if (r->first && r->notify && !r->queued) {
      lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
      notify(L, r);
      lua_pop(L, 1);
    }
  }
}

/* Collects the open sessions with transfers in flight onto the stack; returns how many. */
static int active_sessions(lua_State *L, Session **out, int max) {
  int n = 0;
  lua_getfield(L, LUA_REGISTRYINDEX, SESSIONS_KEY);
  lua_pushnil(L);
  while (lua_next(L, -2)) {
    lua_pop(L, 1);
    Session *s = (Session *)lua_touserdata(L, -1);
    if (s && !s->closed && s->inflight > 0 && n < max) out[n++] = s;
  }
  lua_pop(L, 1);
  return n;
}

/* The sockets of sessions ss[0..n) as pollfds (at most max), and in *wait the shortest of their
 * timers (-1: none; 50 ms when curl has no socket yet, e.g. while it resolves a name). */
static int collect_fds(Session **ss, int n, struct pollfd *fds, int max, long *wait) {
  int nfds = 0;
  *wait = -1;
  for (int i = 0; i < n; i++) {
    fd_set r, w, x;
    int maxfd = -1;
    long t = -1;
    FD_ZERO(&r);
    FD_ZERO(&w);
    FD_ZERO(&x);
    ss[i]->c->curl_multi_fdset(ss[i]->multi, &r, &w, &x, &maxfd);
    ss[i]->c->curl_multi_timeout(ss[i]->multi, &t);
    if (t >= 0 && (*wait < 0 || t < *wait)) *wait = t;
    if (maxfd < 0 && (*wait < 0 || *wait > 50)) *wait = 50;
    for (int fd = 0; fd <= maxfd && nfds < max; fd++) {
      short ev = (short)((FD_ISSET(fd, &r) ? POLLIN : 0) | (FD_ISSET(fd, &w) ? POLLOUT : 0) |
                         (FD_ISSET(fd, &x) ? POLLPRI : 0));
      if (ev) {
        fds[nfds].fd = fd;
        fds[nfds].events = ev;
        fds[nfds].revents = 0;
        nfds++;
      }
    }
  }
  return nfds;
}

/* Waits up to timeout_ms for activity on any of the sessions (or a curl timer). */
static void wait_sessions(Session **ss, int n, int timeout_ms) {
  if (n == 1) { /* the common case: let curl poll its own sockets and timers */
    ss[0]->c->curl_multi_poll(ss[0]->multi, NULL, 0, timeout_ms, NULL);
    return;
  }
  struct pollfd fds[256];
  long wait;
  int nfds = collect_fds(ss, n, fds, 256, &wait);
  if (wait >= 0 && wait < timeout_ms) timeout_ms = (int)wait;
  if (timeout_ms > 0) poll(fds, (nfds_t)nfds, timeout_ms);
}

/* One turn of every session: wait up to timeout_ms for activity (sockets, curl's timers; a
 * transfer just added counts as due at once), or just sleep when nothing is in flight (letta.sleep,
 * retry backoff); then perform. Waiting first means one perform per wake-up: performing on sockets
 * with nothing to read costs a failed recv() per transfer. */
static void step(lua_State *L, int timeout_ms) {
  Session *ss[64];
  int n = active_sessions(L, ss, 64);
  if (timeout_ms > 0) {
    lua_getfield(L, LUA_REGISTRYINDEX, NOTIFY_KEY);
    int news = lua_rawlen(L, -1) > 0;
    lua_pop(L, 1);
    if (!news) {
      if (n > 0) wait_sessions(ss, n, timeout_ms);
      else poll(NULL, 0, timeout_ms);
    }
  }
  for (int i = 0; i < n; i++) session_perform(L, ss[i]);
  for (int i = 0; i < n; i++) notify_streams(L, ss[i]);
}

/* http.step(timeout_ms) -> list of the tasks (given to request:notify) whose requests have news:
 * finished, or stream events. Never blocks longer than timeout_ms (0 = poll). */
static int l_step(lua_State *L) {
  int timeout_ms = (int)luaL_optinteger(L, 1, 0);
  step(L, timeout_ms < 0 ? 0 : timeout_ms);
  lua_getfield(L, LUA_REGISTRYINDEX, NOTIFY_KEY);
  int list = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, list), k = 0;
  if (n == 0) return 1; /* the empty list serves again */
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, NOTIFY_KEY);
  for (lua_Integer i = 1; i <= n; i++) { /* in place: request -> its task (notified once) */
    lua_rawgeti(L, list, i);
    Request *r = check_request(L, -1);
    r->queued = 0;
    r->notify = 0;
    if (lua_getiuservalue(L, -1, 3) != LUA_TNIL) lua_rawseti(L, list, ++k);
    else lua_pop(L, 1);
    lua_pushnil(L);
    lua_setiuservalue(L, -2, 3);
    lua_pop(L, 1);
  }
  for (lua_Integer i = k + 1; i <= n; i++) {
    lua_pushnil(L);
    lua_rawseti(L, list, i);
  }
  return 1;
}

int lh_http_pollfds(lua_State *L, struct pollfd *fds, int max, int *timeout_ms) {
  Session *ss[64];
  long wait;
  int nfds = collect_fds(ss, active_sessions(L, ss, 64), fds, max, &wait);
  lua_getfield(L, LUA_REGISTRYINDEX, NOTIFY_KEY);
  if (lua_istable(L, -1) && lua_rawlen(L, -1) > 0) wait = 0; /* news waiting: step now */
  lua_pop(L, 1);
  if (timeout_ms) *timeout_ms = (int)wait;
  return nfds;
}

/* http.now() -> seconds on a monotonic clock, for timers. */
static int l_now(lua_State *L) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  lua_pushnumber(L, (lua_Number)t.tv_sec + (lua_Number)t.tv_nsec / 1e9);
  return 1;
}

/* http.inflight() -> number of transfers running in all sessions. */
static int l_inflight(lua_State *L) {
  Session *ss[64];
  int n = active_sessions(L, ss, 64), total = 0;
  for (int i = 0; i < n; i++) total += ss[i]->inflight;
  lua_pushinteger(L, total);
  return 1;
}

/* request:wait([slice_ms]) -> done. Drives all sessions until this request is done (or, for a
 * stream, has events), for at most slice_ms (default 100) so that Ctrl-C hooks get to run. */
static int l_request_wait(lua_State *L) {
  Request *r = check_request(L, 1);
  int slice = (int)luaL_optinteger(L, 2, 100);
  struct timespec t0;
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    if (r->state != REQ_RUNNING || r->first) break;
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long spent = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    if (spent >= slice) break;
    step(L, (int)(slice - spent));
  }
  lua_pushboolean(L, r->state != REQ_RUNNING || r->first != NULL);
  return 1;
}

/* A running request is pinned, so only lua_close finalises one still running. */
static int l_request_gc(lua_State *L) {
  request_release(L, check_request(L, 1));
  return 0;
}

/* request:keep() -> request: the next close (e.g. leaving a <close> scope) does nothing, so the
 * request can be returned from such a scope to a caller that will close it. */
static int l_request_keep(lua_State *L) {
  check_request(L, 1)->kept = 1;
  lua_settop(L, 1);
  return 1;
}

/* request:streaming() -> true while the answer is read as server-sent events. */
static int l_request_streaming(lua_State *L) {
  lua_pushboolean(L, check_request(L, 1)->sse != NULL);
  return 1;
}

static int l_request_done(lua_State *L) {
  lua_pushboolean(L, check_request(L, 1)->state != REQ_RUNNING);
  return 1;
}

/* Whether the request was handed to a connection and then lost its answer in a way libcurl
 * reports as something else: its own resend (a kept-alive connection that died before the answer)
 * refused for a request sent once (on_prereq), or that resend failing to connect. Either way the
 * first send may have reached the server: not a "nothing was sent" failure. */
static int lost_after_send(const Request *r) {
  CURLcode rc = r->result;
  if (r->once && r->sends > 1 && rc == CURLE_ABORTED_BY_CALLBACK) return 1;
  return r->sends >= 1 && (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
                           rc == CURLE_COULDNT_RESOLVE_PROXY || rc == CURLE_SSL_CONNECT_ERROR ||
                           rc == CURLE_PEER_FAILED_VERIFICATION);
}

static const char *error_kind(const Request *r) {
  CURLcode rc = r->result;
  if (r->too_big) return "too_large";
  if (lost_after_send(r)) return "reset";
  switch (rc) {
    case CURLE_OK: return NULL;
    case CURLE_OPERATION_TIMEDOUT: return "timeout";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY: return "resolve";
    case CURLE_COULDNT_CONNECT: return "connect";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH: return "tls";
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM: return "reset";
    case CURLE_ABORTED_BY_CALLBACK: return "aborted";
    default: return "transport";
  }
}

/* request:result() -> status, body | nil, kind, message
 * status is the HTTP status (0 when no response came); kind is nil on success or one of
 * "timeout", "resolve", "connect", "tls", "reset", "too_large", "aborted", "transport". */
static int l_request_result(lua_State *L) {
  Request *r = check_request(L, 1);
  if (r->state == REQ_RUNNING) return luaL_error(L, "the request is still running");
  const char *kind = error_kind(r);
  lua_pushinteger(L, kind ? (r->status > 0 && r->result != CURLE_OPERATION_TIMEDOUT ? r->status : 0) : r->status);
  if (kind) {
    lua_pushnil(L);
    lua_pushstring(L, kind);
    if (r->too_big) lua_pushfstring(L, "response larger than %I bytes", (lua_Integer)r->max_body);
    else if (lost_after_send(r))
      lua_pushstring(L, r->once ? "the connection closed after the request was sent, with no answer "
                                  "(it may have been applied; not sent again)"
                                : "the connection closed after the request was sent, with no answer");
    else if (r->errbuf[0]) lua_pushstring(L, r->errbuf);
    else lua_pushstring(L, r->s ? r->s->c->curl_easy_strerror(r->result) : "transfer failed");
    return 4;
  }
  lua_pushlstring(L, r->body.data ? r->body.data : "", r->body.len);
  return 2;
}

/* request:headers() -> {lower-case name = value} of the final response (src/lh_headers.c parses;
 * a repeated name keeps its last value). */
static int header_to_table(void *ud, const char *name, size_t name_len, const char *value,
                           size_t value_len) {
  lua_State *L = (lua_State *)ud;
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < name_len; i++) {
    char k = name[i];
    luaL_addchar(&b, (char)((k >= 'A' && k <= 'Z') ? k + 32 : k));
  }
  luaL_pushresult(&b);
  lua_pushlstring(L, value, value_len);
  lua_rawset(L, -3);
  return 0;
}

static int l_request_headers(lua_State *L) {
  Request *r = check_request(L, 1);
  lua_newtable(L);
  lh_headers_parse(r->head.data, r->head.len, header_to_table, L);
  return 1;
}

/* request:events() -> list of {event=, data=, id=} received since the last call (streams). */
static int l_request_events(lua_State *L) {
  Request *r = check_request(L, 1);
  lua_newtable(L);
  lua_Integer i = 0;
  for (Event *e = r->first; e; e = e->next) {
    lua_createtable(L, 0, 3);
    lua_pushstring(L, e->event);
    lua_setfield(L, -2, "event");
    lua_pushlstring(L, e->data, e->data_len);
    lua_setfield(L, -2, "data");
    if (e->id[0]) {
      lua_pushstring(L, e->id);
      lua_setfield(L, -2, "id");
    }
    lua_rawseti(L, -2, ++i);
  }
  events_clear(r);
  if (r->paused && r->state == REQ_RUNNING && r->s && r->easy) {
    r->paused = 0;
    r->s->c->curl_easy_pause(r->easy, CURLPAUSE_CONT);
  }
  return 1;
}

/* request:notify(task): the request's next news (done, or stream events) makes http.step() return
 * the task, once (the scheduler's await arms it before each wait); request:notify(nil) disarms. */
static int l_request_notify(lua_State *L) {
  Request *r = check_request(L, 1);
  lua_settop(L, 2);
  r->notify = !lua_isnil(L, 2);
  lua_setiuservalue(L, 1, 3);
  if (r->notify && (r->state != REQ_RUNNING || r->first)) notify(L, r);
  return 0;
}

static int l_request_tostring(lua_State *L) {
  Request *r = check_request(L, 1);
  lua_pushfstring(L, "letta.http.Request (%s)", r->state == REQ_RUNNING ? "running" : "done");
  return 1;
}

int luaopen_letta_http(lua_State *L) {
  static const luaL_Reg session_methods[] = {
      {"request", l_request}, {"close", l_session_close}, {NULL, NULL}};
  static const luaL_Reg request_methods[] = {
      {"wait", l_request_wait},       {"done", l_request_done},     {"result", l_request_result},
      {"headers", l_request_headers}, {"events", l_request_events}, {"notify", l_request_notify},
      {"streaming", l_request_streaming}, {"keep", l_request_keep},   {"close", l_request_close},
      {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"session", l_session}, {"step", l_step}, {"inflight", l_inflight}, {"now", l_now}, {NULL, NULL}};

  lh_class(L, SESSION_MT, session_methods, l_session_close, l_session_close, l_session_tostring);
  lh_class(L, REQUEST_MT, request_methods, l_request_gc, l_request_close, l_request_tostring);
  if (lua_getfield(L, LUA_REGISTRYINDEX, SESSIONS_KEY) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
    lua_setfield(L, LUA_REGISTRYINDEX, SESSIONS_KEY);
  } else lua_pop(L, 1);
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, NOTIFY_KEY);
  luaL_newlib(L, fns);
  return 1;
}
