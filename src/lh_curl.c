/* Resolves libcurl at run time (see lh_curl.h for why). */
#include "lh_curl.h"

#include <stdio.h>

#ifndef LH_CURL_LINKED
#include <dlfcn.h>
#endif

static lh_curl_api api;
static int state; /* 0 not tried, 1 loaded, -1 failed */
static char error[256];

#ifdef LH_CURL_LINKED
static int load(void) {
#define LH_CURL_BIND(ret, name, params) api.name = name;
  LH_CURL_FUNCTIONS(LH_CURL_BIND)
#undef LH_CURL_BIND
  return 1;
}
#else
static int load(void) {
  void *lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
  if (!lib) lib = dlopen("libcurl.so", RTLD_NOW | RTLD_LOCAL);
  if (!lib) {
    snprintf(error, sizeof error, "cannot load libcurl: %s", dlerror());
    return 0;
  }
#define LH_CURL_BIND(ret, name, params)                                        \
  *(void **)(&api.name) = dlsym(lib, #name);                                   \
  if (!api.name) {                                                             \
    snprintf(error, sizeof error, "libcurl lacks %s (too old?)", #name);     \
    return 0;                                                                  \
  }
  LH_CURL_FUNCTIONS(LH_CURL_BIND)
#undef LH_CURL_BIND
  return 1; /* the library stays loaded for the life of the process */
}
#endif

const lh_curl_api *lh_curl(void) {
  if (state == 0) {
    state = -1;
    if (load()) {
      CURLcode rc = api.curl_global_init(CURL_GLOBAL_DEFAULT);
      if (rc == CURLE_OK) state = 1;
      else snprintf(error, sizeof error, "curl_global_init failed: %s", api.curl_easy_strerror(rc));
    }
  }
  return state == 1 ? &api : NULL;
}

const char *lh_curl_error(void) { return error[0] ? error : "libcurl not loaded"; }
