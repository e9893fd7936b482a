/* A host with its own poll() loop, as a tool or server with an event loop has: through
 * lh_loop_hooks lettash says which sockets to watch and when its timer is due, and the host calls
 * lh_step(rt, 0) only when one of them is ready or the timer fires, never on a fixed tick. A
 * script runs a few tasks that make requests; the host prints what it watched.
 *   LETTA_BASE_URL=http://127.0.0.1:8283 ./poll_host [requests per task] */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lettash.h"

static const char *script =
    "local letta = require 'letta'\n"
    "local client = letta.client()\n"
    "local n = %d\n"
    "answers = 0\n"
    "for t = 1, 3 do\n"
    "  letta.spawn(function()\n"
    "    for i = 1, n do\n"
    "      if client.health:check().status == 'ok' then answers = answers + 1 end\n"
    "    end\n"
    "  end)\n"
    "end\n"
    "function report() return string.format('done: %%d answers', answers) end\n";

#define MAX_WATCHED 256

/* The host's loop state: what lettash asked it to watch, and its one timer. */
typedef struct host {
  struct pollfd fds[MAX_WATCHED];
  int nfds;
  long long timer_at; /* ms on the monotonic clock; -1: no timer */
  int highest_fd, sockets_seen;
} host;

static long long now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Hooks only record: they run inside lettash's calls. */
static void watch(void *ud, int fd, int events) {
  host *h = (host *)ud;
  int i = 0;
  while (i < h->nfds && h->fds[i].fd != fd) i++;
  if (events == 0) {
    if (i < h->nfds) h->fds[i] = h->fds[--h->nfds];
    return;
  }
  if (i == h->nfds) {
    if (h->nfds == MAX_WATCHED) return; /* a real host would grow its set */
    h->nfds++;
    h->sockets_seen++;
    if (fd > h->highest_fd) h->highest_fd = fd;
  }
  h->fds[i].fd = fd;
  h->fds[i].events = (short)events;
}

static void timer(void *ud, long timeout_ms) {
  host *h = (host *)ud;
  h->timer_at = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
}

/* Waits for what lettash asked, then steps; until no task is left. */
static int run(lh_runtime *rt, host *h) {
  int live = lh_step(rt, 0), steps = 1; /* starts the tasks the script spawned */
  while (live > 0) {
    int wait = h->timer_at < 0 ? -1 : (int)(h->timer_at - now_ms() > 0 ? h->timer_at - now_ms() : 0);
    if (wait < 0 && h->nfds == 0) {
      fprintf(stderr, "poll_host: tasks left but nothing to wait for\n");
      return 1;
    }
    if (poll(h->fds, (nfds_t)h->nfds, wait) < 0) return 1;
    if (h->timer_at >= 0 && now_ms() >= h->timer_at) h->timer_at = -1; /* one-shot: it fired */
    live = lh_step(rt, 0);
    steps++;
  }
  if (live < 0) {
    fprintf(stderr, "poll_host: %s\n", lh_error(rt));
    return 1;
  }
  printf("steps: %d, sockets watched: %d, highest fd: %d\n", steps, h->sockets_seen, h->highest_fd);
  return 0;
}

int main(int argc, char **argv) {
  host h = {.timer_at = -1, .highest_fd = -1};
  lh_loop_hooks hooks = {&h, watch, timer};
  char code[1024];
  snprintf(code, sizeof code, script, argc > 1 ? atoi(argv[1]) : 3);
  lh_runtime *rt = lh_new(NULL);
  if (!rt) return 1;
  int failed = lh_set_loop_hooks(rt, &hooks) != LH_OK || lh_run_string(rt, code, "=poll_host") != LH_OK;
  if (failed) fprintf(stderr, "poll_host: %s\n", lh_error(rt));
  else failed = run(rt, &h);
  if (!failed && lh_call(rt, "report", NULL) == LH_OK) printf("%s\n", lh_result(rt));
  lh_set_loop_hooks(rt, NULL);
  lh_close(rt);
  return failed;
}
