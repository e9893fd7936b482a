/* A minimal unit-test harness: CHECK records a failure and goes on; each test is a function
 * registered in tests/c/test_main.c. The runner prints "N passed, N failed". */
#ifndef LH_CHECK_H
#define LH_CHECK_H

#include <stdio.h>
#include <string.h>

extern int lh_check_failures; /* failures in the current test */

/* A loopback server that accepts connections and never answers (tests/c/test_http.c); *port is
 * its port. For tests that need a transfer to stay in flight. */
int silent_server(int *port);

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      fprintf(stderr, "  %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
      lh_check_failures++;                                                           \
    }                                                                                \
  } while (0)

#define CHECK_STR(got, want)                                                          \
  do {                                                                                \
    const char *g_ = (got), *w_ = (want);                                             \
    if (!g_ || strcmp(g_, w_) != 0) {                                                 \
      fprintf(stderr, "  %s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__,        \
              g_ ? g_ : "(null)", w_);                                                \
      lh_check_failures++;                                                            \
    }                                                                                 \
  } while (0)

typedef struct {
  const char *name;
  void (*fn)(void);
} lh_test;

#endif
