/* libcurl, loaded on first use. Linking libcurl pulls some 30 shared libraries (TLS, HTTP/2, LDAP,
 * Kerberos...) whose loading alone costs ~3 ms: more than Lua's whole start-up. Scripts that never
 * touch the network should not pay it, so the CLI resolves libcurl with dlopen when first needed.
 * Build with -DLH_CURL_LINKED to call a normally linked libcurl instead. */
#ifndef LH_CURL_H
#define LH_CURL_H

#include <stddef.h>

/* curl.h turns curl_easy_setopt and friends into type-checking macros under gcc; they would
 * also rewrite calls through our function table (api->curl_easy_setopt(...)). */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

/* X(return type, name, parameter list) for every libcurl function lettash calls. */
#define LH_CURL_FUNCTIONS(X)                                                            \
  X(CURLcode, curl_global_init, (long flags))                                           \
  X(curl_version_info_data *, curl_version_info, (CURLversion age))                     \
  X(CURL *, curl_easy_init, (void))                                                     \
  X(void, curl_easy_cleanup, (CURL * h))                                                \
  X(CURLcode, curl_easy_setopt, (CURL * h, CURLoption opt, ...))                        \
  X(CURLcode, curl_easy_getinfo, (CURL * h, CURLINFO info, ...))                        \
  X(const char *, curl_easy_strerror, (CURLcode code))                                  \
  X(CURLcode, curl_easy_pause, (CURL * h, int bitmask))                                 \
  X(CURLM *, curl_multi_init, (void))                                                   \
  X(CURLMcode, curl_multi_cleanup, (CURLM * m))                                         \
  X(CURLMcode, curl_multi_add_handle, (CURLM * m, CURL * h))                            \
  X(CURLMcode, curl_multi_remove_handle, (CURLM * m, CURL * h))                         \
  X(CURLMcode, curl_multi_socket_action, (CURLM * m, curl_socket_t s, int ev, int *running)) \
  X(CURLMsg *, curl_multi_info_read, (CURLM * m, int *left))                            \
  X(CURLMcode, curl_multi_setopt, (CURLM * m, CURLMoption opt, ...))                    \
  X(CURLMcode, curl_multi_timeout, (CURLM * m, long *timeout_ms))                       \
  X(const char *, curl_multi_strerror, (CURLMcode code))                                \
  X(struct curl_slist *, curl_slist_append, (struct curl_slist * l, const char *s))     \
  X(void, curl_slist_free_all, (struct curl_slist * l))

typedef struct lh_curl_api {
#define LH_CURL_FIELD(ret, name, params) ret(*name) params;
  LH_CURL_FUNCTIONS(LH_CURL_FIELD)
#undef LH_CURL_FIELD
} lh_curl_api;

/* The libcurl function table, loaded and globally initialised on the first call. Returns NULL
 * when libcurl cannot be loaded; lh_curl_error() then says why. Not thread-safe on first call. */
const lh_curl_api *lh_curl(void);
const char *lh_curl_error(void);

#endif
