/* letta.http: HTTP transfers for Lua over libcurl's multi interface, never blocking Lua for long.
 * A session is one multi handle (its connections are kept alive and reused); a request is one
 * transfer. C buffers everything (body, headers, SSE events) and Lua only ever pulls results, so a
 * Lua error can never unwind through libcurl's stack: no Lua runs inside a curl callback.
 * Transfers are driven with curl_multi_socket_action: libcurl says which sockets to watch and when
 * its timer fires (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION), the way luv and hiredis's adapters plug
 * into an event loop. The same set feeds our poll(), lh_pollfds and a host's lh_loop_hooks, so no
 * fd_set (and its FD_SETSIZE limit) is involved anywhere. */
#include "lh_http.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lauxlib.h"
#include "lettash.h"
#include "lh_curl.h"
#include "lh_headers.h"
#include "lh_sse.h"
#include "lh_util.h"

#define SESSION_MT "letta.http.Session"
#define REQUEST_MT "letta.http.Request"
#define HUB_MT "letta.http.Hub"
#define NOWAIT_KEY "letta.http.nowait" /* registry: why request:wait may not block, if set */
#define NOTIFY_KEY "letta.http.notify" /* registry: requests with news for the scheduler */
#define POOL_MAX 128
#define STREAM_PAUSE_BYTES (4 << 20) /* pause a stream whose unread events reach this */
#define BLIND_WAIT_MS 50 /* longest wait for a transfer with neither socket nor timer (never seen) */

static const char hub_key = 0; /* registry key (its address) of the Lua state's Hub */

typedef struct Event {
  struct Event *next;
  char *event, *data, *id;
  size_t data_len;
} Event;

typedef struct Session Session;

typedef struct Request {
  Session *s; /* kept alive by the request (user value 1); may be closed */
  struct Request *prev, *next; /* the session's running requests */
  int ref; /* registry reference pinning the userdata while it runs */
  CURL *easy; /* from acquisition until finished */
  struct curl_slist *headers; /* own list when the caller added headers */
  int closed;  /* created closed; open once started; closed again by close/__gc */
  int running; /* in the session's multi handle */
  int notify;  /* report completion and events through NOTIFY_KEY */
  int queued;  /* already in the notify list */
  int paused;
  int checked; /* a stream's status was looked at */
  int once;    /* must not be sent twice (not safe to repeat) */
  int kept;    /* the next close is skipped (request:keep) */
  int sends;   /* times libcurl was about to send it */
  CURLcode result;
  long status;
  size_t max_body;
  int too_big;
  lh_buf body, head;
  lh_sse *sse;
  Event *first, *last;
  size_t queued_bytes;
  char errbuf[CURL_ERROR_SIZE];
} Request;

/* A socket libcurl asked us to watch, and for what (POLLIN/POLLOUT). */
typedef struct Sock {
  curl_socket_t fd;
  short events;
} Sock;

typedef struct Hub Hub;

struct Session {
  CURLM *multi;
  const lh_curl_api *c;
  Hub *hub; /* set while linked into the hub's list of open sessions */
  Session *prev, *next;
  struct curl_slist *base;      /* Accept, User-Agent, Authorization: the token lives only here */
  struct curl_slist *base_json; /* the same plus Content-Type: application/json */
  CURL *pool[POOL_MAX];
  int npool;
  int inflight;
  Request *running; /* list of running requests */
  Sock *socks; /* what libcurl watches (CURLMOPT_SOCKETFUNCTION) */
  int nsocks, capsocks;
  long long deadline; /* when libcurl's timer fires (ms, monotonic clock); -1: no timer */
  long connect_timeout_ms;
  size_t max_body;
  char *ca_file; /* CURLOPT_CAINFO: a CA bundle (PEM) */
  char *ca_path; /* CURLOPT_CAPATH: a directory of hashed CA certificates */
  char *prefix; /* every URL must start with it (the client's base URL + "/"): see l_request */
  int insecure;
  int closed;
};

/* One per Lua state (a userdata in the registry): the open sessions, so that a step drives them
 * all, and the host's loop hooks (lh_set_loop_hooks), told of every socket and of the earliest
 * time a step is due. */
struct Hub {
  Session *sessions;
  lh_loop_hooks hooks;
  int hooked;
  int news;        /* requests on the notify list: a step is due now */
  long long told;  /* the time last given to hooks.timer (-1: none) */
  long long wake;  /* the scheduler's own next wake-up (http.wake; -1: none) */
  struct pollfd *pfd; /* a step's poll set, kept for reuse */
  Session **owner;    /* the session of each pfd entry */
  int cap;
};

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------------------------------
 * Events */

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
    r->s->c->curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &code);
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
  return lh_buf_add(&r->body, ptr, len) == 0 ? len : 0;
}

static size_t on_header(char *ptr, size_t size, size_t n, void *ud) {
  Request *r = (Request *)ud;
  size_t len = size * n;
  /* A new response (after a 100 Continue or a redirect) replaces the headers of the last. */
  if (len > 5 && memcmp(ptr, "HTTP/", 5) == 0) lh_buf_reset(&r->head);
  return lh_buf_add(&r->head, ptr, len) == 0 ? len : 0;
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
 * The hub, and libcurl's socket and timer callbacks (C only: they may tell the host's hooks) */

static int l_hub_gc(lua_State *L) {
  Hub *h = (Hub *)lua_touserdata(L, 1);
  free(h->pfd);
  free(h->owner);
  h->pfd = NULL;
  h->owner = NULL;
  h->cap = 0;
  return 0;
}

/* The hub of L, created on first use. Raises only on memory exhaustion. */
static Hub *hub_of(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &hub_key) == LUA_TUSERDATA) {
    Hub *h = (Hub *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
  }
  lua_pop(L, 1);
  Hub *h = (Hub *)lua_newuserdatauv(L, sizeof(Hub), 0);
  memset(h, 0, sizeof *h);
  h->told = h->wake = -1;
  if (luaL_newmetatable(L, HUB_MT)) {
    lua_pushcfunction(L, l_hub_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &hub_key);
  return h;
}

/* The earliest time a step is due (ms, monotonic clock): now when news wait, else the first of
 * the sessions' timers and the scheduler's wake-up; -1: none. */
static long long hub_next(const Hub *h) {
  if (h->news) return now_ms();
  long long next = h->wake;
  for (const Session *s = h->sessions; s; s = s->next)
    if (s->deadline >= 0 && (next < 0 || s->deadline < next)) next = s->deadline;
  return next;
}

/* Tells the host's timer hook when the next step is due, when that changed. */
static void hub_timer(Hub *h) {
  if (!h || !h->hooked) return;
  long long next = hub_next(h);
  if (next == h->told) return;
  h->told = next;
  long long ms = next < 0 ? -1 : next - now_ms();
  h->hooks.timer(h->hooks.ud, next < 0 ? -1L : (long)(ms > 0 ? ms : 0));
}

static void hub_watch(Hub *h, curl_socket_t fd, short events) {
  if (h && h->hooked) h->hooks.watch(h->hooks.ud, (int)fd, events);
}

/* CURLMOPT_SOCKETFUNCTION: libcurl wants fd watched for `what`, or no longer (CURL_POLL_REMOVE). */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *ud, void *sockp) {
  Session *s = (Session *)ud;
  (void)easy, (void)sockp;
  short events = (short)(what == CURL_POLL_REMOVE ? 0 : ((what & CURL_POLL_IN) ? POLLIN : 0) |
                                                         ((what & CURL_POLL_OUT) ? POLLOUT : 0));
  int i = 0;
  while (i < s->nsocks && s->socks[i].fd != fd) i++;
  if (events == 0) {
    if (i == s->nsocks) return 0;
    s->socks[i] = s->socks[--s->nsocks];
  } else if (i < s->nsocks) {
    s->socks[i].events = events;
  } else {
    if (s->nsocks == s->capsocks) {
      int cap = s->capsocks ? 2 * s->capsocks : 8;
      Sock *p = (Sock *)realloc(s->socks, (size_t)cap * sizeof *p);
      if (!p) return -1; /* libcurl then fails the transfers of this multi handle */
      s->socks = p;
      s->capsocks = cap;
    }
    s->socks[s->nsocks].fd = fd;
    s->socks[s->nsocks++].events = events;
  }
  hub_watch(s->hub, fd, events);
  return 0;
}

/* CURLMOPT_TIMERFUNCTION: libcurl's timer now fires in timeout_ms (-1: cancelled). Called from
 * curl_multi_add_handle too, with 0 for a new transfer: that is what makes the next step start it. */
static int on_timer(CURLM *multi, long timeout_ms, void *ud) {
  Session *s = (Session *)ud;
  (void)multi;
  s->deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
  hub_timer(s->hub);
  return 0;
}

/* Protected part of lh_http_set_hooks (it creates the hub when http was never opened). */
static int set_hooks(lua_State *L) {
  const lh_loop_hooks *hooks = (const lh_loop_hooks *)lua_touserdata(L, 1);
  Hub *h = hub_of(L);
  if (h->hooked) { /* the old hooks forget everything */
    for (Session *s = h->sessions; s; s = s->next)
      for (int i = 0; i < s->nsocks; i++) h->hooks.watch(h->hooks.ud, (int)s->socks[i].fd, 0);
    if (h->told >= 0) h->hooks.timer(h->hooks.ud, -1);
  }
  h->hooked = hooks != NULL;
  h->told = -1;
  if (!hooks) return 0;
  h->hooks = *hooks;
  for (Session *s = h->sessions; s; s = s->next) /* the new ones learn what is in use */
    for (int i = 0; i < s->nsocks; i++) h->hooks.watch(h->hooks.ud, (int)s->socks[i].fd, s->socks[i].events);
  hub_timer(h);
  return 0;
}

int lh_http_set_hooks(lua_State *L, const lh_loop_hooks *hooks) {
  if (hooks && (!hooks->watch || !hooks->timer)) return LH_ERR_ARG;
  lua_pushcfunction(L, set_hooks);
  lua_pushlightuserdata(L, (void *)hooks);
  if (lua_pcall(L, 1, 0, 0) == LUA_OK) return LH_OK;
  lua_pop(L, 1);
  return LH_ERR_MEMORY; /* the only way set_hooks can fail */
}

/* ---------------------------------------------------------------------------------------------
 * Arguments: the table forms name the field at fault, as luaL_argerror names the argument */

/* Pushes field k of the table at t. Returns 0 for nil; raises unless it is of type `type`. The
 * value stays on the stack, which anchors it (an __index may have made it). */
static int field(lua_State *L, int t, const char *k, int type, const char *fn) {
  int got = lua_getfield(L, t, k);
  if (got == LUA_TNIL) return 0;
  if (got != type) lh_field_typeerror(L, -1, fn, k, lua_typename(L, type));
  return 1;
}

static const char *field_string(lua_State *L, int t, const char *k, const char *fn, const char *def) {
  return field(L, t, k, LUA_TSTRING, fn) ? lua_tostring(L, -1) : def;
}

static lua_Integer field_integer(lua_State *L, int t, const char *k, const char *fn, lua_Integer def) {
  if (!field(L, t, k, LUA_TNUMBER, fn)) return def;
  int ok;
  lua_Integer v = lua_tointegerx(L, -1, &ok);
  if (!ok) lh_field_error(L, fn, k, "number has no integer representation");
  return v;
}

/* Checks that the list at idx holds only strings (header lines); returns its length. */
static lua_Integer check_lines(lua_State *L, int idx, const char *fn) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, idx, i) != LUA_TSTRING) {
      int bad = lua_gettop(L);
      lh_field_typeerror(L, bad, fn, lua_pushfstring(L, "headers[%I]", i), "string");
    }
    lua_pop(L, 1); /* the list anchors it */
  }
  return n;
}

/* ---------------------------------------------------------------------------------------------
 * Sessions */

static Session *check_session(lua_State *L, int idx) {
  Session *s = (Session *)luaL_checkudata(L, idx, SESSION_MT);
  if (s->closed) luaL_error(L, "attempt to use a closed HTTP session");
  return s;
}

/* Appends the line a..b to *l. Returns 0, or -1 out of memory (*l unchanged). Any length: a
 * fixed buffer here once cut a token over ~1000 bytes (long JWTs), which the server then refused
 * as 401 with nothing to say why. */
static int line_add(const lh_curl_api *c, struct curl_slist **l, const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  char small[1024], *line = la + lb < sizeof small ? small : (char *)malloc(la + lb + 1);
  if (!line) return -1;
  memcpy(line, a, la);
  memcpy(line + la, b, lb + 1);
  struct curl_slist *n = c->curl_slist_append(*l, line);
  explicit_bzero(line, la + lb); /* may have held the token (a plain memset can be optimised away) */
  if (line != small) free(line);
  if (!n) return -1;
  *l = n;
  return 0;
}

/* Appends every line of `from`, then the strings of the list at stack index idx (n of them). */
static int lines_add(const lh_curl_api *c, struct curl_slist **l, const struct curl_slist *from,
                     lua_State *L, int idx, lua_Integer n) {
  for (; from; from = from->next)
    if (line_add(c, l, from->data, "") != 0) return -1;
  for (lua_Integer i = 1; i <= n; i++) {
    lua_rawgeti(L, idx, i); /* checked strings, anchored by the list */
    int rc = line_add(c, l, lua_tostring(L, -1), "");
    lua_pop(L, 1);
    if (rc != 0) return -1;
  }
  return 0;
}

/* What http.session{...} was given, read and checked before anything is allocated. */
typedef struct SessionOptions {
  const char *user_agent, *token, *ca_file, *ca_path, *prefix;
  lua_Integer connect_timeout_ms, max_body, nheaders;
  int insecure, headers; /* headers: stack index of the `headers` list, 0 when absent */
} SessionOptions;

static void session_options(lua_State *L, SessionOptions *o) {
  luaL_checktype(L, 1, LUA_TTABLE);
  luaL_checkstack(L, 12, NULL); /* every value stays on the stack */
  memset(o, 0, sizeof *o);
  o->connect_timeout_ms = field_integer(L, 1, "connect_timeout_ms", "session", 10000);
  o->max_body = field_integer(L, 1, "max_body", "session", 64 << 20);
  o->ca_file = field_string(L, 1, "ca_file", "session", NULL);
  o->ca_path = field_string(L, 1, "ca_path", "session", NULL);
  o->prefix = field_string(L, 1, "prefix", "session", NULL);
  o->user_agent = field_string(L, 1, "user_agent", "session", "lettash/" LETTASH_VERSION);
  o->token = field_string(L, 1, "token", "session", NULL);
  lua_getfield(L, 1, "insecure");
  o->insecure = lua_toboolean(L, -1);
  if (field(L, 1, "headers", LUA_TTABLE, "session")) { /* extra "Name: value" lines for every request */
    o->headers = lua_gettop(L);
    o->nheaders = check_lines(L, o->headers, "session");
  }
}

static void request_finish(lua_State *L, Request *r, CURLcode result);

/* Releases whatever the session acquired, on every path (close, __gc, a set-up that failed half
 * way): aborts its transfers, tells the host's hooks its sockets are gone, frees handles, lists
 * and strings, and leaves it closed. Idempotent. */
static void session_release(lua_State *L, Session *s) {
  const lh_curl_api *c = s->c;
  while (s->running) { /* abort every transfer still running */
    Request *r = s->running;
    request_finish(L, r, CURLE_ABORTED_BY_CALLBACK);
    snprintf(r->errbuf, sizeof r->errbuf, "the HTTP session was closed");
  }
  for (int i = 0; i < s->npool; i++) c->curl_easy_cleanup(s->pool[i]);
  s->npool = 0;
  if (s->multi) c->curl_multi_cleanup(s->multi); /* may still report sockets gone: s stays valid */
  s->multi = NULL;
  for (int i = 0; i < s->nsocks; i++) hub_watch(s->hub, s->socks[i].fd, 0);
  free(s->socks);
  s->socks = NULL;
  s->nsocks = s->capsocks = 0;
  s->deadline = -1;
  if (c) {
    c->curl_slist_free_all(s->base);
    c->curl_slist_free_all(s->base_json);
  }
  s->base = s->base_json = NULL;
  free(s->ca_file);
  free(s->ca_path);
  free(s->prefix);
  s->ca_file = s->ca_path = s->prefix = NULL;
  Hub *h = s->hub;
  if (h) { /* unlink */
    if (s->prev) s->prev->next = s->next;
    else h->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    s->prev = s->next = NULL;
    s->hub = NULL;
    hub_timer(h);
  }
  s->closed = 1;
}

/* Acquires what the options ask for. Returns 0, or -1 out of memory (session_release frees the
 * part acquired). */
static int session_acquire(lua_State *L, Session *s, const SessionOptions *o) {
  const lh_curl_api *c = s->c;
  if ((o->ca_file && !(s->ca_file = strdup(o->ca_file))) || (o->ca_path && !(s->ca_path = strdup(o->ca_path))) ||
      (o->prefix && !(s->prefix = strdup(o->prefix))))
    return -1;
  if (line_add(c, &s->base, "Accept: application/json", "") != 0 ||
      line_add(c, &s->base, "User-Agent: ", o->user_agent) != 0 ||
      (o->token && *o->token && line_add(c, &s->base, "Authorization: Bearer ", o->token) != 0) ||
      lines_add(c, &s->base, NULL, L, o->headers, o->nheaders) != 0)
    return -1;
  /* The JSON variant is a second list with the same lines: curl_slist has no sharing. */
  if (lines_add(c, &s->base_json, s->base, L, 0, 0) != 0 ||
      line_add(c, &s->base_json, "Content-Type: application/json", "") != 0)
    return -1;
  if (!(s->multi = c->curl_multi_init())) return -1;
  c->curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  c->curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, (void *)s);
  c->curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_timer);
  c->curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, (void *)s);
  return 0;
}

/* http.session{user_agent=, token=, headers=, connect_timeout_ms=, max_body=, ca_file=, ca_path=,
 * prefix=, insecure=} -> session. The token goes into the Authorization header and is not kept
 * anywhere Lua can read. Every option is checked before anything is allocated. */
static int l_session(lua_State *L) {
  SessionOptions o;
  session_options(L, &o);
  const lh_curl_api *c = lh_curl();
  if (!c) return luaL_error(L, "%s", lh_curl_error());
  Hub *h = hub_of(L);
  Session *s = (Session *)lua_newuserdatauv(L, sizeof(Session), 0);
  memset(s, 0, sizeof *s); /* created closed: release has nothing to free until acquired */
  s->closed = 1;
  s->deadline = -1;
  s->c = c;
  luaL_setmetatable(L, SESSION_MT);
  s->connect_timeout_ms = (long)o.connect_timeout_ms;
  s->max_body = (size_t)o.max_body;
  s->insecure = o.insecure;
  if (session_acquire(L, s, &o) != 0) {
    session_release(L, s);
    return luaL_error(L, "cannot create HTTP session: out of memory");
  }
  s->hub = h; /* open: http.step() drives every open session */
  s->next = h->sessions;
  if (h->sessions) h->sessions->prev = s;
  h->sessions = s;
  s->closed = 0;
  return 1;
}

/* Aborts every transfer of the session and releases it. Idempotent; also __gc and __close. */
static int l_session_close(lua_State *L) {
  session_release(L, (Session *)luaL_checkudata(L, 1, SESSION_MT));
  return 0;
}

static int l_session_tostring(lua_State *L) {
  Session *s = (Session *)luaL_checkudata(L, 1, SESSION_MT);
  lua_pushfstring(L, "letta.http.Session (%s, %d in flight)", s->closed ? "closed" : "open", s->inflight);
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Requests */

/* The request at idx, open: every method of a closed one raises, as liolib's files do. */
static Request *check_request(lua_State *L, int idx) {
  Request *r = (Request *)luaL_checkudata(L, idx, REQUEST_MT);
  if (r->closed) luaL_error(L, "attempt to use a closed HTTP request");
  return r;
}

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
  Hub *h = r->s->hub;
  if (h) {
    h->news++;
    hub_timer(h); /* a host with loop hooks steps at once */
  }
}

/* Gives an easy handle back to the session's pool (or frees it when the pool is full). */
static void easy_release(Session *s, CURL *e) {
  const lh_curl_api *c = s->c;
  /* drop per-request pointers before pooling: they die with the request */
  c->curl_easy_setopt(e, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
  c->curl_easy_setopt(e, CURLOPT_ERRORBUFFER, (char *)NULL);
  if (s->npool < POOL_MAX && !s->closed) s->pool[s->npool++] = e;
  else c->curl_easy_cleanup(e);
}

/* The transfer is over: keep its results, give the easy handle back to the pool. */
static void request_finish(lua_State *L, Request *r, CURLcode result) {
  Session *s = r->s;
  if (!r->running) return;
  const lh_curl_api *c = s->c;
  r->running = 0;
  r->result = result;
  c->curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &r->status);
  c->curl_multi_remove_handle(s->multi, r->easy);
  easy_release(s, r->easy);
  r->easy = NULL;
  s->inflight--;
  c->curl_slist_free_all(r->headers);
  r->headers = NULL;
  lua_rawgeti(L, LUA_REGISTRYINDEX, r->ref);
  unpin(L, s, r);
  notify(L, r);
  lua_pop(L, 1);
}

/* Releases whatever the request acquired, on every path (close, __gc, a start that failed half
 * way): aborts its transfer, frees its header list, buffers and events; leaves it closed.
 * Idempotent. */
static void request_release(lua_State *L, Request *r) {
  if (r->running) {
    request_finish(L, r, CURLE_ABORTED_BY_CALLBACK);
    snprintf(r->errbuf, sizeof r->errbuf, "the request was closed before it completed");
  }
  if (r->easy) easy_release(r->s, r->easy); /* acquired, never started */
  r->easy = NULL;
  if (r->headers) r->s->c->curl_slist_free_all(r->headers);
  r->headers = NULL;
  lh_buf_free(&r->body);
  lh_buf_free(&r->head);
  events_clear(r);
  lh_sse_free(r->sse);
  r->sse = NULL;
  r->notify = 0;
  r->closed = 1;
}

/* request:close(): aborts the transfer if running and frees the request. Idempotent (a closed
 * request's close, __close and __gc do nothing more); also __close. */
static int l_request_close(lua_State *L) {
  Request *r = (Request *)luaL_checkudata(L, 1, REQUEST_MT);
  if (r->kept && !r->closed) { /* handed over out of a to-be-closed scope: the new owner closes it */
    r->kept = 0;
    return 0;
  }
  request_release(L, r);
  return 0;
}

/* A running request is pinned, so only lua_close finalises one still running. */
static int l_request_gc(lua_State *L) {
  request_release(L, (Request *)luaL_checkudata(L, 1, REQUEST_MT));
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

/* What a request asks for, from either form of session:request. The strings live on the stack. */
typedef struct RequestSpec {
  const char *method, *url, *body;
  size_t body_len;
  int body_idx, headers_idx; /* stack indices; 0: none */
  lua_Integer nheaders;
  long timeout_ms, idle_ms;
  int stream, once;
} RequestSpec;

/* session:request{method=, url=, body=, headers=, timeout=, timeout_ms=, idle_timeout_ms=,
 * stream=, once=}: timeout in seconds (or timeout_ms). */
static void request_fields(lua_State *L, RequestSpec *q) {
  luaL_checkstack(L, 12, NULL); /* every value stays on the stack */
  q->method = field_string(L, 2, "method", "request", "GET");
  if (!(q->url = field_string(L, 2, "url", "request", NULL))) lh_field_typeerror(L, -1, "request", "url", "string");
  if (field(L, 2, "body", LUA_TSTRING, "request")) q->body = lua_tolstring(L, q->body_idx = lua_gettop(L), &q->body_len);
  if (field(L, 2, "headers", LUA_TTABLE, "request")) q->headers_idx = lua_gettop(L);
  q->timeout_ms = (long)field_integer(L, 2, "timeout_ms", "request", 0);
  if (field(L, 2, "timeout", LUA_TNUMBER, "request")) {
    lua_Number t = lua_tonumber(L, -1);
    q->timeout_ms = t > 0 ? (long)(t * 1000 + 0.999) : 0;
  }
  q->idle_ms = (long)field_integer(L, 2, "idle_timeout_ms", "request", 0);
  lua_getfield(L, 2, "stream");
  q->stream = lua_toboolean(L, -1);
  lua_getfield(L, 2, "once");
  q->once = lua_toboolean(L, -1);
}

/* session:request(method, url, body, headers, timeout_ms, idle_timeout_ms, stream, once): the
 * client's hot path, without a table. */
static void request_args(lua_State *L, RequestSpec *q) {
  lua_settop(L, 9);
  q->method = luaL_checkstring(L, 2);
  q->url = luaL_checkstring(L, 3);
  if ((q->body = luaL_optlstring(L, 4, NULL, &q->body_len))) q->body_idx = 4;
  if (!lua_isnil(L, 5)) {
    luaL_checktype(L, 5, LUA_TTABLE);
    q->headers_idx = 5;
  }
  q->timeout_ms = (long)luaL_optinteger(L, 6, 0);
  q->idle_ms = (long)luaL_optinteger(L, 7, 0);
  q->stream = lua_toboolean(L, 8);
  q->once = lua_toboolean(L, 9);
}

/* The options that change per request on e; the rest was set once in new_easy(). Method and body
 * are set on every use, so a pooled handle carries nothing over. */
static void easy_setup(const lh_curl_api *c, CURL *e, Request *r, const RequestSpec *q,
                       const struct curl_slist *headers) {
  c->curl_easy_setopt(e, CURLOPT_URL, q->url);
  c->curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  c->curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)r);
  c->curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)r);
  c->curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)r);
  c->curl_easy_setopt(e, CURLOPT_ERRORBUFFER, r->errbuf);
  c->curl_easy_setopt(e, CURLOPT_PREREQDATA, (void *)r);
  c->curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, q->timeout_ms);
  /* For streams: an idle timeout (no byte for idle_ms) instead of a total one. */
  c->curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, q->idle_ms > 0 ? 1L : 0L);
  c->curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, q->idle_ms > 0 ? (q->idle_ms + 999) / 1000 : 0L);
  int is_get = strcmp(q->method, "GET") == 0, is_post = strcmp(q->method, "POST") == 0;
  c->curl_easy_setopt(e, CURLOPT_NOBODY, strcmp(q->method, "HEAD") == 0 ? 1L : 0L);
  if (q->body) {
    c->curl_easy_setopt(e, CURLOPT_POST, 1L);
    c->curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)q->body_len);
    c->curl_easy_setopt(e, CURLOPT_POSTFIELDS, q->body); /* not copied: the request holds the string */
  } else if (is_post || !is_get) {
    c->curl_easy_setopt(e, CURLOPT_POST, is_post ? 1L : 0L);
    if (!is_post) c->curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    c->curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    c->curl_easy_setopt(e, CURLOPT_POSTFIELDS, is_post ? "" : (const char *)NULL);
  } else {
    c->curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
  }
  c->curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, (is_get || is_post) ? (const char *)NULL : q->method);
}

/* Acquires the request's parts (event parser, header list, easy handle) and starts it. Returns
 * NULL, or why not (request_release then frees the part acquired). */
static const char *request_start(lua_State *L, Session *s, Request *r, const RequestSpec *q) {
  const lh_curl_api *c = s->c;
  if (q->stream && !(r->sse = lh_sse_new(on_sse_event, r, s->max_body))) return "out of memory";
  const struct curl_slist *headers = q->body ? s->base_json : s->base;
  if (q->nheaders > 0) {
    if (lines_add(c, &r->headers, headers, L, q->headers_idx, q->nheaders) != 0) return "out of memory";
    headers = r->headers;
  }
  r->easy = s->npool > 0 ? s->pool[--s->npool] : new_easy(s);
  if (!r->easy) return "out of memory";
  easy_setup(c, r->easy, r, q, headers);
  CURLMcode mc = c->curl_multi_add_handle(s->multi, r->easy);
  if (mc != CURLM_OK) return c->curl_multi_strerror(mc);
  r->running = 1;
  s->inflight++;
  return NULL;
}

/* session:request(...) or session:request{...} (see request_args and request_fields) -> request,
 * already started. headers: {"Name: value", ...} added to the session's; body: a string (JSON);
 * idle_timeout_ms: for streams, instead of a total timeout; once: never sent twice (on_prereq). */
static int l_request(lua_State *L) {
  Session *s = check_session(L, 1);
  RequestSpec q;
  memset(&q, 0, sizeof q);
  if (lua_istable(L, 2)) request_fields(L, &q);
  else request_args(L, &q);
  if (q.headers_idx) q.nheaders = check_lines(L, q.headers_idx, "request");
  /* The token goes with every request of the session: only ever to the session's own server. */
  if (s->prefix && strncmp(q.url, s->prefix, strlen(s->prefix)) != 0)
    return luaL_error(L, "refusing a request outside %s", s->prefix);

  Request *r = (Request *)lua_newuserdatauv(L, sizeof(Request), 3); /* session, body, task */
  memset(r, 0, sizeof *r); /* created closed: release has nothing to free until acquired */
  r->closed = 1;
  r->ref = LUA_NOREF;
  r->result = CURLE_FAILED_INIT;
  r->s = s;
  r->max_body = s->max_body;
  r->once = q.once;
  luaL_setmetatable(L, REQUEST_MT);
  int ridx = lua_gettop(L);
  lua_pushvalue(L, 1); /* the request keeps its session alive */
  lua_setiuservalue(L, ridx, 1);
  if (q.body_idx) { /* and the body curl sends from */
    lua_pushvalue(L, q.body_idx);
    lua_setiuservalue(L, ridx, 2);
  }
  const char *err = request_start(L, s, r, &q);
  if (err) {
    request_release(L, r);
    return luaL_error(L, "cannot start transfer: %s", err);
  }
  r->closed = 0;
  pin(L, s, r, ridx);
  lua_settop(L, ridx);
  return 1;
}

/* ---------------------------------------------------------------------------------------------
 * Driving transfers */

/* Whether a step must drive s: transfers in flight, or sockets or a timer libcurl still wants. */
static int busy(const Session *s) { return s->inflight > 0 || s->nsocks > 0 || s->deadline >= 0; }

/* Collects the sockets of the busy sessions into h->pfd (their sessions in h->owner); returns
 * how many, and in *next the earliest time a step is due (-1: none). A busy session with neither
 * socket nor timer (libcurl always gives one or the other) is looked at again within 50 ms. */
static int gather_fds(Hub *h, long long *next) {
  int n = 0;
  *next = hub_next(h);
  for (Session *s = h->sessions; s; s = s->next) {
    if (!busy(s)) continue;
    if (n + s->nsocks > h->cap) {
      int cap = 2 * (n + s->nsocks) + 16;
      struct pollfd *p = (struct pollfd *)realloc(h->pfd, (size_t)cap * sizeof *p);
      if (p) h->pfd = p;
      Session **o = p ? (Session **)realloc(h->owner, (size_t)cap * sizeof *o) : NULL;
      if (o) h->owner = o;
      if (!p || !o) { /* out of memory: poll what fits, and look again soon */
        long long soon = now_ms() + BLIND_WAIT_MS;
        if (*next < 0 || soon < *next) *next = soon;
        continue;
      }
      h->cap = cap;
    }
    for (int i = 0; i < s->nsocks; i++, n++) {
      h->pfd[n].fd = s->socks[i].fd;
      h->pfd[n].events = s->socks[i].events;
      h->pfd[n].revents = 0;
      h->owner[n] = s;
    }
    if (s->nsocks == 0 && s->deadline < 0) {
      long long blind = now_ms() + BLIND_WAIT_MS;
      if (*next < 0 || blind < *next) *next = blind;
    }
  }
  return n;
}

/* Finishes the completed transfers of s. */
static void finish_done(lua_State *L, Session *s) {
  const lh_curl_api *c = s->c;
  int left;
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

/* Hands libcurl what the poll found: each ready socket, then every timer that is due. */
static void act(Hub *h, int nfds) {
  int running;
  for (int i = 0; i < nfds; i++) {
    short re = h->pfd[i].revents;
    if (!re) continue;
    int mask = ((re & (POLLIN | POLLHUP)) ? CURL_CSELECT_IN : 0) | ((re & POLLOUT) ? CURL_CSELECT_OUT : 0) |
               ((re & (POLLERR | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
    Session *s = h->owner[i];
    s->c->curl_multi_socket_action(s->multi, h->pfd[i].fd, mask, &running);
  }
  long long now = now_ms();
  for (Session *s = h->sessions; s; s = s->next)
    if (s->deadline >= 0 && s->deadline <= now)
      s->c->curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
}

/* One turn of every session: wait up to timeout_ms for activity (sockets, libcurl's timers; a
 * transfer just added counts as due at once), or just sleep when nothing is in flight
 * (letta.sleep, retry backoff); then hand libcurl what is ready and finish what completed. */
static void step(lua_State *L, Hub *h, int timeout_ms) {
  long long next;
  int nfds = gather_fds(h, &next);
  int wait = h->news ? 0 : timeout_ms;
  if (wait > 0 && next >= 0) {
    long long due = next - now_ms();
    if (due < wait) wait = due > 0 ? (int)due : 0;
  }
  if (nfds > 0 || wait > 0) poll(h->pfd, (nfds_t)nfds, wait);
  act(h, nfds);
  long long now = now_ms();
  for (Session *s = h->sessions; s; s = s->next) {
    if (!busy(s)) continue;
    finish_done(L, s);
    notify_streams(L, s);
    /* libcurl only calls the timer callback when its timer changes: read it back after acting,
     * so that a timer that fired is never taken for one still pending */
    long t = -1;
    s->c->curl_multi_timeout(s->multi, &t);
    s->deadline = t < 0 ? -1 : now + t;
  }
}

/* http.step(timeout_ms) -> list of the tasks (given to request:notify) whose requests have news:
 * finished, or stream events. Never blocks longer than timeout_ms (0 = poll). */
static int l_step(lua_State *L) {
  int timeout_ms = (int)luaL_optinteger(L, 1, 0);
  Hub *h = hub_of(L);
  h->wake = -1; /* the scheduler is turning: it says again when it needs the next turn */
  step(L, h, timeout_ms < 0 ? 0 : timeout_ms);
  h->told = -2; /* the host's timer is one-shot and may have fired: tell it again */
  lua_getfield(L, LUA_REGISTRYINDEX, NOTIFY_KEY);
  int list = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, list), k = 0;
  if (n == 0) {
    hub_timer(h);
    return 1; /* the empty list serves again */
  }
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, NOTIFY_KEY);
  h->news = 0;
  for (lua_Integer i = 1; i <= n; i++) { /* in place: request -> its task (notified once) */
    lua_rawgeti(L, list, i);
    Request *r = (Request *)luaL_checkudata(L, -1, REQUEST_MT); /* closed ones too: their task waits */
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
  hub_timer(h);
  return 1;
}

/* http.wake(ms): the scheduler's next turn is due in ms (a sleeping task, a task ready to run);
 * nil: none. Only for the host's timer hook and lh_pollfds' timeout; cleared by http.step. */
static int l_wake(lua_State *L) {
  Hub *h = hub_of(L);
  h->wake = lua_isnoneornil(L, 1) ? -1 : now_ms() + (luaL_checkinteger(L, 1) > 0 ? lua_tointeger(L, 1) : 0);
  hub_timer(h);
  return 0;
}

int lh_http_pollfds(lua_State *L, struct pollfd *fds, int max, int *timeout_ms) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &hub_key) != LUA_TUSERDATA) { /* letta.http never opened */
    lua_pop(L, 1);
    if (timeout_ms) *timeout_ms = -1;
    return 0;
  }
  Hub *h = (Hub *)lua_touserdata(L, -1);
  lua_pop(L, 1);
  long long next;
  int n = gather_fds(h, &next);
  if (n > max) n = max;
  if (fds && n > 0) memcpy(fds, h->pfd, (size_t)n * sizeof *fds);
  if (timeout_ms) {
    long long due = next < 0 ? -1 : next - now_ms();
    *timeout_ms = next < 0 ? -1 : due > 0 ? (due > 0x7fffffff ? 0x7fffffff : (int)due) : 0;
  }
  return n;
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
  int total = 0;
  for (Session *s = hub_of(L)->sessions; s; s = s->next) total += s->inflight;
  lua_pushinteger(L, total);
  return 1;
}

/* request:wait([slice_ms]) -> done. Drives all sessions until this request is done (or, for a
 * stream, has events), for at most slice_ms (default 100) so that Ctrl-C hooks get to run. */
static int l_request_wait(lua_State *L) {
  Request *r = check_request(L, 1);
  int slice = (int)luaL_optinteger(L, 2, 100);
  if (lua_getfield(L, LUA_REGISTRYINDEX, NOWAIT_KEY) == LUA_TSTRING)
    return luaL_error(L, "%s", lua_tostring(L, -1));
  lua_pop(L, 1);
  Hub *h = hub_of(L);
  long long t0 = now_ms();
  for (;;) {
    if (!r->running || r->first) break;
    long long spent = now_ms() - t0;
    if (spent >= slice) break;
    step(L, h, (int)(slice - spent));
  }
  hub_timer(h);
  lua_pushboolean(L, !r->running || r->first != NULL);
  return 1;
}

/* http.refuse_blocking(message): from now on request:wait raises message instead of blocking
 * (the sandbox: see loop.refuse_blocking; scripts reach requests through client.session). */
static int l_refuse_blocking(lua_State *L) {
  luaL_checkstring(L, 1);
  lua_settop(L, 1);
  lua_setfield(L, LUA_REGISTRYINDEX, NOWAIT_KEY);
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
  lua_pushboolean(L, !check_request(L, 1)->running);
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
  if (r->running) return luaL_error(L, "the request is still running");
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
    else lua_pushstring(L, r->s->c->curl_easy_strerror(r->result));
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
  if (r->paused && r->running) {
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
  if (r->notify && (!r->running || r->first)) notify(L, r);
  return 0;
}

/* __tostring: never raises, closed or not (as liolib's "file (closed)"). */
static int l_request_tostring(lua_State *L) {
  Request *r = (Request *)luaL_checkudata(L, 1, REQUEST_MT);
  lua_pushfstring(L, "letta.http.Request (%s)", r->closed ? "closed" : r->running ? "running" : "done");
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
      {"session", l_session}, {"step", l_step},   {"wake", l_wake},
      {"inflight", l_inflight}, {"now", l_now}, {"refuse_blocking", l_refuse_blocking}, {NULL, NULL}};

  lh_class(L, SESSION_MT, session_methods, l_session_close, l_session_close, l_session_tostring);
  lh_class(L, REQUEST_MT, request_methods, l_request_gc, l_request_close, l_request_tostring);
  hub_of(L)->news = 0; /* the notify list starts empty */
  lua_newtable(L);
  lua_setfield(L, LUA_REGISTRYINDEX, NOTIFY_KEY);
  luaL_newlib(L, fns);
  return 1;
}
