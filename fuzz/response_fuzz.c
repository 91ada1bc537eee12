/*
** response_fuzz.c: libFuzzer target for what the core reads from a server (src/response.c).
** One input is a raw HTTP response: header lines up to a blank line, then the body. It is fed the
** way libcurl feeds the core: one header line at a time (with its CRLF), then the body in chunks
** whose sizes come from the input's first byte. The harness parses the status line, Content-Type
** and Content-Length itself (libcurl does that in the core), then checks the promises:
**   - no read or write outside a buffer (ASan), no undefined behaviour (UBSan);
**   - the Content-Disposition value and the filename stay NUL-terminated inside their buffers;
**   - a body kept in memory never grows past the cap;
**   - only a 200 is ever taken for a file, for media/get and a CDN alike (never a 204 or a 206);
**   - a body that starts with '{' (after a UTF-8 BOM and blanks) and fits the cap is never a file;
**   - a body that ends empty, blank or as a lone BOM is never a file.
*/
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "response.h"

#define CD_SIZE WXM_CD_MAX        /* as the core's wxm_transfer.cd */
#define MAX_BODY 4096             /* a small cap, so that the fuzzer reaches it */

static void check (int ok) {
  if (!ok) abort();
}

/* The value of a header line "Name: value\r\n" when its name is `name`, copied into out. */
static int header_value (const char *line, size_t n, const char *name, char *out, size_t outsize) {
  size_t k = strlen(name), i, len;
  if (n <= k || strncasecmp(line, name, k) != 0 || line[k] != ':') return 0;
  for (i = k + 1; i < n && (line[i] == ' ' || line[i] == '\t'); i++) {}
  len = n - i;
  while (len > 0 && (line[i + len - 1] == '\r' || line[i + len - 1] == '\n')) len--;
  if (len >= outsize) len = outsize - 1;
  memcpy(out, line + i, len);
  out[len] = '\0';
  return 1;
}

struct response {
  long status;
  int has_ct, has_cd;
  long long cl;
  char ct[256];
  char cd[CD_SIZE];
};

/* Feeds the header lines; returns where the body starts. */
static size_t read_headers (const char *d, size_t size, struct response *r) {
  size_t pos = 0;
  while (pos < size) {
    const char *nl = memchr(d + pos, '\n', size - pos);
    size_t n = nl ? (size_t)(nl - (d + pos)) + 1 : size - pos;
    const char *line = d + pos;
    char num[32];
    pos += n;
    if (n <= 2 && (line[0] == '\n' || line[0] == '\r')) break;      /* the blank line */
    if (wxm_header_starts_response(line, n)) {
      r->has_cd = r->has_ct = 0;
      r->cd[0] = '\0';
      r->cl = -1;
      r->status = n > 12 ? strtol((char[4]){ line[9], line[10], line[11], '\0' }, NULL, 10) : 0;
    }
    else if (wxm_header_cd(line, n, r->cd, sizeof r->cd)) {
      r->has_cd = 1;
      check(strlen(r->cd) < sizeof r->cd);
    }
    else if (header_value(line, n, "content-type", r->ct, sizeof r->ct)) r->has_ct = 1;
    else if (header_value(line, n, "content-length", num, sizeof num)) {
      char *end;
      long long v = strtoll(num, &end, 10);
      r->cl = (end != num && v >= 0) ? v : -1;
    }
  }
  return pos;
}

/* Past an optional UTF-8 BOM and the blanks after it: the index of the first telling byte. */
static size_t first_telling (const char *d, size_t n) {
  size_t i = (n >= 3 && memcmp(d, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
  while (i < n && (d[i] == ' ' || (d[i] >= '\t' && d[i] <= '\r'))) i++;
  return i;
}

/* The body, in chunks, through the same steps as download.c's write callback and finish(). */
static void read_body (const char *d, size_t size, size_t chunk, const struct response *r, int media_get) {
  enum wxm_mode mode = wxm_decide(r->status, r->has_ct ? r->ct : NULL, media_get, r->has_cd);
  char *held = NULL;              /* the sniffed or in-memory body */
  size_t held_len = 0, pos = 0;
  int json = 0, over = 0;
  check(mode == WXM_BODY || mode == WXM_SNIFF);
  while (pos < size && mode != WXM_FILE) {
    size_t n = size - pos < chunk ? size - pos : chunk;
    if (mode == WXM_BODY && !wxm_body_fits(held_len, n, MAX_BODY)) { over = 1; break; }
    {
      char *grown = realloc(held, held_len + n);
      check(grown != NULL);
      held = grown;
    }
    memcpy(held + held_len, d + pos, n);
    held_len += n;
    pos += n;
    if (mode == WXM_SNIFF) {
      switch (wxm_sniff_body(held, held_len, held_len - n, r->cl, MAX_BODY)) {
        case WXM_SNIFF_MORE: check(held_len <= MAX_BODY); break;
        case WXM_SNIFF_JSON: mode = WXM_BODY; json = 1; break;
        case WXM_SNIFF_OVER_CAP: over = 1; pos = size; break;
        case WXM_SNIFF_FILE: mode = WXM_FILE; break;
      }
    }
    if (mode == WXM_BODY) check(held_len <= MAX_BODY);
  }
  if (mode == WXM_FILE) {
    /* a file: a 200 whose first telling byte exists and is not an error document's '{' */
    size_t i = first_telling(held, held_len);
    check(r->status == 200);
    check(i < held_len);
    check(held[i] != '{' || (r->cl >= 0 && r->cl > MAX_BODY));
  }
  else if (mode == WXM_SNIFF && !over) {
    /* the body ended while still undecided: empty, blank or a BOM, and not a file */
    check(first_telling(held, held_len) == held_len || (held_len < 3 && (unsigned char)held[0] == 0xEF));
  }
  if (json) {
    /* an error document: its first byte past a BOM and blanks is '{', and it was never a file */
    size_t i = first_telling(held, held_len);
    check(i < held_len && held[i] == '{');
  }
  free(held);
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  struct response r;
  const char *d = (const char *)data;
  size_t body, chunk;
  if (size < 1) return 0;
  chunk = (size_t)(data[0] % 64) + 1;       /* libcurl hands the body in pieces of any size */
  d++;
  size--;
  memset(&r, 0, sizeof r);
  r.cl = -1;
  body = read_headers(d, size, &r);
  if (r.has_cd) {
    char name[CD_SIZE];
    memset(name, 'x', sizeof name);
    if (wxm_parse_filename(r.cd, name, sizeof name)) check(memchr(name, '\0', sizeof name) != NULL);
    /* a tiny buffer: the name is cut, never overflows */
    if (wxm_parse_filename(r.cd, name, 4)) check(memchr(name, '\0', 4) != NULL);
  }
  read_body(d + body, size - body, chunk, &r, 1);
  read_body(d + body, size - body, chunk, &r, 0);
  return 0;
}
