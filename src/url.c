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

/* RFC 3986's unreserved characters (A-Z a-z 0-9 - . _ ~), which escaping leaves as they are: '1'
   at their code, for the characters below 128. */
static const char UNRESERVED[129] =
  "0000000000000000000000000000000000000000000001101111111111000000"
  "0111111111111111111111111110000101111111111111111111111111100010";

/* 1 when s[0..n) holds only unreserved characters. */
static int unreserved (const char *s, size_t n) {
  size_t i;
  for (i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 128 || UNRESERVED[c] != '1') return 0;
  }
  return 1;
}

/*
** Appends s escaped. An access_token, a media type or a media_id needs no escaping: it is copied,
** since curl_easy_escape goes a byte at a time through a growing buffer (10k instructions for a
** token, 5% of an upload's; BENCHMARKS.md).
*/
static int add_escaped (wxm_buf *b, CURL *curl, const char *s, size_t n) {
  char *e;
  int ok;
  if (unreserved(s, n)) return wxm_buf_add(b, s, n);
  if (n > (size_t)0x7fffffff) return 0;
  e = curl_easy_escape(curl, s, (int)n);
  ok = e != NULL && wxm_buf_addstr(b, e);
  curl_free(e);
  return ok;
}

/* Appends ?key=value or &key=value, both escaped. */
int wxm_url_param (wxm_buf *b, CURL *curl, const char *key, const char *value, size_t vlen) {
  const char *sep = (b->len > 0 && memchr(b->data, '?', b->len) != NULL) ? "&" : "?";
  return wxm_buf_addstr(b, sep) && add_escaped(b, curl, key, strlen(key)) && wxm_buf_add(b, "=", 1)
    && add_escaped(b, curl, value, vlen);
}

/* Ends the URL with a NUL, for CURLOPT_URL (which copies it). */
int wxm_url_terminate (wxm_buf *b) {
  if (!wxm_buf_add(b, "", 1)) return 0;
  b->len--;
  return 1;
}
