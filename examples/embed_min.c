/* The smallest host: create a runtime, run a script, call one of its functions, close.
 *   cc embed_min.c $(pkg-config --cflags --libs lettash) && ./a.out */
#include <stdio.h>

#include "lettash.h"

int main(void) {
  lh_runtime *rt = lh_new(NULL);
  if (!rt) return 1;
  if (lh_run_string(rt, "letta = require 'letta'\n"
                        "function greet(name) return 'hello ' .. name .. ' from lettash ' .. letta._VERSION end",
                    "=embed_min") != LH_OK ||
      lh_call(rt, "greet", "host") != LH_OK) {
    fprintf(stderr, "embed_min: %s\n", lh_error(rt));
    lh_close(rt);
    return 1;
  }
  printf("%s\n", lh_result(rt));
  lh_close(rt);
  return 0;
}
