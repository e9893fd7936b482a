/* The bare libcurl reference for bench/requests.sh: N GETs of URL with the options lettash sets
 * (src/lh_http.c), body and headers appended to growing buffers, nothing decoded.
 *   curl_loop URL N                one easy handle reused: N sequential requests, one connection
 *   curl_loop URL N inflight K     one multi handle keeping K transfers in flight until N are done
 * Exits 0 only if every answer was a 200 whose body holds "status":"ok". */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USER_AGENT "lettash/0.1.0" /* the same header bytes as lettash sends */

typedef struct {
  char *data;
  size_t len, cap;
} Buf;

typedef struct {
  CURL *easy;
  Buf body, head;
} Transfer;

static size_t buf_append(Buf *b, const char *p, size_t n) {
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1) cap *= 2;
    char *q = realloc(b->data, cap);
    if (!q) return 0;
    b->data = q;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return n;
}

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  return buf_append(&((Transfer *)ud)->body, p, size * n);
}

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  Transfer *t = ud;
  if (size * n > 5 && memcmp(p, "HTTP/", 5) == 0) t->head.len = 0;
  return buf_append(&t->head, p, size * n);
}

static struct curl_slist *headers;

static void setup(Transfer *t, const char *url) {
  CURL *e = t->easy = curl_easy_init();
  if (!e) {
    fprintf(stderr, "curl_loop: curl_easy_init failed\n");
    exit(1);
  }
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)t);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, (void *)t);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, (void *)t);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 60000L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
}

/* Checks one finished transfer and empties its buffers for the next. */
static void check(Transfer *t, CURLcode rc) {
  long status = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  if (rc != CURLE_OK || status != 200 || !t->body.data || !strstr(t->body.data, "\"status\":\"ok\"")) {
    fprintf(stderr, "curl_loop: bad answer: %s, status %ld\n", curl_easy_strerror(rc), status);
    exit(1);
  }
  t->body.len = t->head.len = 0;
}

static void sequential(const char *url, long n) {
  Transfer t = {0};
  setup(&t, url);
  for (long i = 0; i < n; i++) check(&t, curl_easy_perform(t.easy));
  curl_easy_cleanup(t.easy);
  free(t.body.data);
  free(t.head.data);
}

static void in_flight(const char *url, long n, int k) {
  CURLM *m = curl_multi_init();
  Transfer *ts = calloc((size_t)k, sizeof *ts);
  long started = 0, done = 0;
  for (int i = 0; i < k && started < n; i++, started++) {
    setup(&ts[i], url);
    curl_multi_add_handle(m, ts[i].easy);
  }
  while (done < n) {
    int running, left;
    curl_multi_perform(m, &running);
    CURLMsg *msg;
    while ((msg = curl_multi_info_read(m, &left))) {
      if (msg->msg != CURLMSG_DONE) continue;
      Transfer *t;
      CURL *e = msg->easy_handle;
      CURLcode rc = msg->data.result;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&t);
      curl_multi_remove_handle(m, e);
      check(t, rc);
      done++;
      if (started < n) {
        curl_multi_add_handle(m, e);
        started++;
      }
    }
    if (done < n) curl_multi_poll(m, NULL, 0, 1000, NULL);
  }
  for (int i = 0; i < k; i++) {
    if (!ts[i].easy) continue;
    curl_easy_cleanup(ts[i].easy);
    free(ts[i].body.data);
    free(ts[i].head.data);
  }
  free(ts);
  curl_multi_cleanup(m);
}

int main(int argc, char **argv) {
  if (!(argc == 3 || (argc == 5 && strcmp(argv[3], "inflight") == 0))) {
    fprintf(stderr, "usage: curl_loop URL N [inflight K]\n");
    return 2;
  }
  long n = atol(argv[2]);
  int k = argc == 5 ? atoi(argv[4]) : 0;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "User-Agent: " USER_AGENT);
  if (k > 0) in_flight(argv[1], n, k);
  else sequential(argv[1], n);
  curl_slist_free_all(headers);
  curl_global_cleanup();
  return 0;
}
