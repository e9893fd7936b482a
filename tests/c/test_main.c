/* Runs every C unit test and prints "N passed, N failed" (the line tests/run.sh reads). */
#include <stdio.h>

#include "check.h"

int lh_check_failures;

#define TESTS(X)                          \
  X(test_json_integers_and_floats)        \
  X(test_json_null_arrays_objects)        \
  X(test_json_strings)                    \
  X(test_json_malformed_input)            \
  X(test_json_depth_limits)               \
  X(test_json_round_trip_document)        \
  X(test_runtime_embedded_library)        \
  X(test_runtime_require_letta)           \
  X(test_runtime_source_tree_override)

#define DECLARE(name) void name(void);
TESTS(DECLARE)
#define ENTRY(name) {#name, name},
static const lh_test tests[] = {TESTS(ENTRY)};

int main(void) {
  int passed = 0, failed = 0;
  for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
    lh_check_failures = 0;
    tests[i].fn();
    if (lh_check_failures == 0) {
      passed++;
      printf("ok - %s\n", tests[i].name);
    } else {
      failed++;
      printf("not ok - %s\n", tests[i].name);
    }
  }
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
