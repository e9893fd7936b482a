/* Parser of an HTTP response's header block (as libcurl hands it over: the status line and the
 * "Name: value" lines, each ending in CRLF or LF). Pure C over a byte range, so that it can be
 * fuzzed on its own (tests/fuzz/fuzz_headers.c). */
#ifndef LH_HEADERS_H
#define LH_HEADERS_H

#include <stddef.h>

/* Called once per "Name: value" line, in order: name[0..name_len) is non-empty and holds no ':'
 * (not lower-cased: the caller does that); value[0..value_len) is the value with the leading
 * spaces/tabs and the trailing CR/spaces removed. A non-zero return stops the parse and is
 * returned by lh_headers_parse. Lines with no ':' or an empty name (the status line, the blank
 * line) are skipped. Neither string is NUL-terminated and either may hold NUL bytes. */
typedef int (*lh_header_fn)(void *ud, const char *name, size_t name_len, const char *value,
                            size_t value_len);

int lh_headers_parse(const char *s, size_t len, lh_header_fn fn, void *ud);

#endif
