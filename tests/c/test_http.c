/* The HTTP transport's lifetimes and sockets (src/lh_http.c): what a failed set-up acquired is
 * released, descriptors above FD_SETSIZE are watched, and a host's loop hooks hear of every
 * socket and of the timer. No server needed: a listening socket that never answers will do. */
#include <arpa/inet.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "lettash.h"
#include "lh_curl.h"

/* Bytes the C heap holds (glibc); the sanitizer build reports 0 and checks leaks itself. */
static size_t heap_in_use(void) { return mallinfo2().uordblks; }

/* Runs `code` (which defines try()), calls try() once to warm up, then `rounds` more times; returns
 * how much the C heap grew over those rounds. */
static long heap_growth(lh_runtime *rt, const char *code, int rounds) {
  CHECK(lh_run_string(rt, code, "=leak") == LH_OK);
  CHECK(lh_call(rt, "try", "1") == LH_OK);
  lua_gc(lh_state(rt), LUA_GCCOLLECT);
  size_t before = heap_in_use();
  char n[16];
  snprintf(n, sizeof n, "%d", rounds);
  CHECK(lh_call(rt, "try", n) == LH_OK);
  lua_gc(lh_state(rt), LUA_GCCOLLECT);
  return (long)heap_in_use() - (long)before;
}

void test_http_session_with_bad_options_acquires_nothing(void) {
  lh_runtime *rt = lh_new(NULL);
  /* each failing session{} was given 3 x 4 KB of strings to copy before the bad option */
  long grew = heap_growth(rt,
                          "local http = require 'letta.http'\n"
                          "local big = string.rep('x', 4096)\n"
                          "function try(n)\n"
                          "  for i = 1, tonumber(n) do\n"
                          "    pcall(http.session, { ca_file = big, ca_path = {} })\n"
                          "    pcall(http.session, { ca_file = big, prefix = big, user_agent = {} })\n"
                          "    pcall(http.session, { ca_file = big, headers = { 'X-A: b', 7 } })\n"
                          "  end\n"
                          "end",
                          200);
  if (grew > 256 * 1024) fprintf(stderr, "  the heap grew by %ld bytes\n", grew);
  CHECK(grew <= 256 * 1024); /* before: some 2.4 MB */
  lh_close(rt);
}

static CURLMcode refuse_add(CURLM *m, CURL *h) {
  (void)m, (void)h;
  return CURLM_OUT_OF_MEMORY;
}

void test_http_request_that_cannot_start_releases_its_header_list(void) {
  lh_curl_api *api = (lh_curl_api *)lh_curl(); /* a fault injected into the function table */
  CHECK(api != NULL);
  if (!api) return;
  CURLMcode (*add)(CURLM *, CURL *) = api->curl_multi_add_handle;
  api->curl_multi_add_handle = refuse_add;
  lh_runtime *rt = lh_new(NULL);
  long grew = heap_growth(rt,
                          "local http = require 'letta.http'\n"
                          "local s = http.session{}\n"
                          "local line = 'X-Big: ' .. string.rep('x', 8192)\n"
                          "function try(n)\n"
                          "  for i = 1, tonumber(n) do\n"
                          "    local ok, err = pcall(s.request, s, { url = 'http://127.0.0.1:9/', headers = { line } })\n"
                          "    assert(not ok and err:find('cannot start transfer'), err)\n"
                          "  end\n"
                          "end",
                          200);
  api->curl_multi_add_handle = add;
  if (grew > 256 * 1024) fprintf(stderr, "  the heap grew by %ld bytes\n", grew);
  CHECK(grew <= 256 * 1024); /* before: some 1.6 MB */
  lh_close(rt);
}

/* (check.h) The kernel accepts the connections; nobody reads them. */
int silent_server(int *port) {
  int srv = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(bind(srv, (struct sockaddr *)&a, sizeof a) == 0 && listen(srv, 16) == 0);
  socklen_t len = sizeof a;
  getsockname(srv, (struct sockaddr *)&a, &len);
  *port = ntohs(a.sin_port);
  return srv;
}

/* Starts `n` tasks, each waiting for an answer from the server on port. */
static lh_runtime *waiting_runtime(int port, int n) {
  char code[400];
  snprintf(code, sizeof code,
           "local letta = require 'letta'\n"
           "local c = letta.client{ base_url = 'http://127.0.0.1:%d', timeout = 5, max_retries = 0 }\n"
           "for i = 1, %d do letta.spawn(function() pcall(c.health.check, c.health) end) end",
           port, n);
  lh_runtime *rt = lh_new(NULL);
  CHECK(lh_run_string(rt, code, "=wait") == LH_OK);
  return rt;
}

void test_http_pollfds_reports_descriptors_above_fd_setsize(void) {
  struct rlimit rl;
  getrlimit(RLIMIT_NOFILE, &rl);
  if (rl.rlim_cur < FD_SETSIZE + 200 && rl.rlim_max >= FD_SETSIZE + 200) {
    rl.rlim_cur = FD_SETSIZE + 200;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  int fillers[FD_SETSIZE], nfill = 0; /* every descriptor below FD_SETSIZE taken */
  while (nfill < FD_SETSIZE) {
    int fd = open("/dev/null", O_RDONLY);
    if (fd < 0) break;
    if (fd >= FD_SETSIZE) {
      close(fd);
      break;
    }
    fillers[nfill++] = fd;
  }
  int port, srv = silent_server(&port);
  CHECK(srv >= FD_SETSIZE);
  lh_runtime *rt = waiting_runtime(port, 2);
  struct pollfd fds[16];
  int n = 0, timeout = -2, highest = -1;
  for (int i = 0; i < 100 && n < 2; i++) { /* until both transfers have their socket */
    lh_step(rt, 10);
    n = lh_pollfds(rt, fds, 16, &timeout);
  }
  for (int i = 0; i < n; i++)
    if (fds[i].fd > highest) highest = fds[i].fd;
  if (n < 2 || highest < FD_SETSIZE) fprintf(stderr, "  %d fds, highest %d\n", n, highest);
  CHECK(n == 2);
  CHECK(highest >= FD_SETSIZE);
  CHECK(fds[0].events & (POLLIN | POLLOUT));
  lh_close(rt);
  close(srv);
  while (nfill > 0) close(fillers[--nfill]);
}

typedef struct {
  int watched[64], events[64], nwatched; /* what the host watches now */
  int adds, removes, timers;
  long last_timer;
} host_loop;

static void on_watch(void *ud, int fd, int events) {
  host_loop *h = (host_loop *)ud;
  int i = 0;
  while (i < h->nwatched && h->watched[i] != fd) i++;
  if (events == 0) {
    h->removes++;
    if (i < h->nwatched) {
      h->watched[i] = h->watched[--h->nwatched];
      h->events[i] = h->events[h->nwatched];
    }
  } else {
    h->adds++;
    if (i == h->nwatched && h->nwatched < 64) h->watched[h->nwatched++] = fd;
    if (i < 64) h->events[i] = events;
  }
}

static void on_timer(void *ud, long timeout_ms) {
  host_loop *h = (host_loop *)ud;
  h->timers++;
  h->last_timer = timeout_ms;
}

void test_http_loop_hooks_hear_of_every_socket_and_the_timer(void) {
  host_loop h = {0};
  lh_loop_hooks hooks = {&h, on_watch, on_timer};
  int port, srv = silent_server(&port);
  lh_runtime *rt = lh_new(NULL);
  CHECK(lh_set_loop_hooks(rt, &hooks) == LH_OK);
  lh_loop_hooks half = {&h, on_watch, NULL};
  CHECK(lh_set_loop_hooks(rt, &half) == LH_ERR_ARG);
  lh_close(rt);
  rt = waiting_runtime(port, 3);
  CHECK(lh_set_loop_hooks(rt, &hooks) == LH_OK);
  CHECK(lh_step(rt, 0) == 3); /* the tasks start their requests: the timer says "step now" */
  CHECK(h.timers >= 1 && h.last_timer >= 0);
  for (int i = 0; i < 100 && h.nwatched < 3; i++) {
    struct pollfd fds[64];
    for (int k = 0; k < h.nwatched; k++) fds[k] = (struct pollfd){h.watched[k], (short)h.events[k], 0};
    poll(fds, (nfds_t)h.nwatched, h.last_timer < 0 || h.last_timer > 20 ? 20 : (int)h.last_timer);
    lh_step(rt, 0);
  }
  CHECK(h.nwatched == 3);
  struct pollfd fds[8];
  CHECK(lh_pollfds(rt, fds, 8, NULL) == 3); /* lh_pollfds sees the same set */
  CHECK(h.last_timer > 0); /* the request timeouts (5 s) */
  /* removed: the old hooks drop everything; set again: they hear of it all at once */
  CHECK(lh_set_loop_hooks(rt, NULL) == LH_OK);
  CHECK(h.nwatched == 0 && h.last_timer == -1);
  CHECK(lh_set_loop_hooks(rt, &hooks) == LH_OK);
  CHECK(h.nwatched == 3 && h.last_timer > 0);
  lh_close(rt); /* the transfers are aborted: every socket is given back */
  CHECK(h.nwatched == 0);
  CHECK(h.adds >= 6 && h.removes >= 6);
  close(srv);
}
