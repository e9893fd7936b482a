/* The Lua library compiled into the runtime; the table is generated from lua/letta/ by
 * src/embed.lua at build time. */
#ifndef LH_EMBEDDED_H
#define LH_EMBEDDED_H

#include <stddef.h>

typedef struct {
  const char *name;      /* module name, e.g. "letta.json" */
  const char *chunkname; /* e.g. "@letta/json.lua" */
  const char *source;
  size_t length;
} lh_embedded_module;

extern const lh_embedded_module lh_embedded[]; /* ends with a NULL name */

#endif
