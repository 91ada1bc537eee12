/*
** url.c: building request URLs. Every query value is escaped by libcurl (curl_easy_escape).
*/
#include <string.h>

#include "common.h"

/* base + path, with exactly one slash between; an absolute path (http:// or https://) stands alone. */
int wxm_url_join (wxm_buf *b, const char *base, const char *path) {
  if (strncmp(path, "http://", 7) == 0 || strncmp(path, "https://", 8) == 0)
    return wxm_buf_addstr(b, path);
  if (!wxm_buf_addstr(b, base)) return 0;
  if (path[0] != '/' && !wxm_buf_add(b, "/", 1)) return 0;
  return wxm_buf_addstr(b, path);
}

/* Appends ?key=value or &key=value, both escaped. */
int wxm_url_param (wxm_buf *b, CURL *curl, const char *key, const char *value, size_t vlen) {
  char *k, *v;
  int ok;
  const char *sep = (b->len > 0 && memchr(b->data, '?', b->len) != NULL) ? "&" : "?";
  if (vlen > (size_t)0x7fffffff) return 0;
  k = curl_easy_escape(curl, key, 0);
  v = curl_easy_escape(curl, value, (int)vlen);
  ok = k != NULL && v != NULL && wxm_buf_addstr(b, sep) && wxm_buf_addstr(b, k)
    && wxm_buf_add(b, "=", 1) && wxm_buf_addstr(b, v);
  curl_free(k);
  curl_free(v);
  return ok;
}

/* Ends the URL with a NUL, for CURLOPT_URL (which copies it). */
int wxm_url_terminate (wxm_buf *b) {
  if (!wxm_buf_add(b, "", 1)) return 0;
  b->len--;
  return 1;
}
