/*
** response.c: reading what a server sends (see response.h). Pure functions over bytes, so that
** the fuzz target can drive them with anything a broken or hostile server could send.
*/
#include <ctype.h>
#include <string.h>
#include <strings.h>

#include "response.h"

static int contains_nocase (const char *s, const char *word) {
  size_t n = strlen(word);
  for (; *s != '\0'; s++)
    if (strncasecmp(s, word, n) == 0) return 1;
  return 0;
}

enum wxm_mode wxm_decide (long status, const char *ct, int media_get, int has_cd) {
  int texty = ct != NULL && (contains_nocase(ct, "json") || strncasecmp(ct, "text/", 5) == 0);
  if (status != 200 || texty || (media_get && !has_cd)) return WXM_BODY;
  return WXM_SNIFF;
}

/* A UTF-8 byte order mark: JSON written by some servers (and editors) starts with one. */
static const unsigned char BOM[3] = { 0xEF, 0xBB, 0xBF };

enum wxm_sniff wxm_sniff_body (const char *data, size_t len, size_t from, long long cl,
                               size_t max_body) {
  size_t bom = 0, i;
  while (bom < sizeof BOM && bom < len && (unsigned char)data[bom] == BOM[bom]) bom++;
  if (bom == len && bom < sizeof BOM) return WXM_SNIFF_MORE;     /* nothing, or a BOM's first bytes */
  if (bom < sizeof BOM) bom = 0;
  /* data[0..from) was blank, or the first bytes of a BOM (then from < 3): those are looked at again */
  i = from < sizeof BOM ? bom : (from > bom ? from : bom);
  for (; i < len && isspace((unsigned char)data[i]); i++) {}
  if (i >= len)          /* all blank so far */
    return len <= max_body ? WXM_SNIFF_MORE : WXM_SNIFF_OVER_CAP;
  if (data[i] == '{' && (cl < 0 || (long long)max_body >= cl))
    return len > max_body ? WXM_SNIFF_OVER_CAP : WXM_SNIFF_JSON;
  return WXM_SNIFF_FILE;
}

int wxm_body_fits (size_t have, size_t n, size_t max) {
  return have <= max && n <= max - have;
}

int wxm_header_starts_response (const char *line, size_t n) {
  return n >= 5 && memcmp(line, "HTTP/", 5) == 0;
}

/* WeChat spells it "Content-disposition": the name is matched without case. */
int wxm_header_cd (const char *p, size_t n, char *out, size_t outsize) {
  static const char name[] = "content-disposition:";
  size_t i = sizeof name - 1, len;
  if (outsize == 0 || n < sizeof name - 1 || strncasecmp(p, name, sizeof name - 1) != 0) return 0;
  while (i < n && (p[i] == ' ' || p[i] == '\t')) i++;
  len = n - i;
  while (len > 0 && (p[i + len - 1] == '\r' || p[i + len - 1] == '\n' || p[i + len - 1] == ' '))
    len--;
  if (len >= outsize) len = outsize - 1;
  memcpy(out, p + i, len);
  out[len] = '\0';
  return 1;
}

static int hexval (int c) {
  if (c >= '0' && c <= '9') return c - '0';
  c = tolower(c);
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Past the rest of the current parameter (up to its ';'). */
static const char *skip_param (const char *p) {
  while (*p != '\0' && *p != ';') p++;
  return p;
}

int wxm_parse_filename (const char *cd, char *out, size_t outsize) {
  int found = 0;
  const char *p = cd;
  while (*p != '\0') {
    const char *name, *eq;
    size_t o = 0, namelen;
    int star;
    while (*p == ';' || isspace((unsigned char)*p)) p++;
    name = p;
    while (*p != '\0' && *p != '=' && *p != ';') p++;
    if (*p != '=') continue;
    eq = p++;
    namelen = (size_t)(eq - name);
    while (namelen > 0 && isspace((unsigned char)name[namelen - 1])) namelen--;
    while (isspace((unsigned char)*p)) p++;
    star = namelen == 9 && strncasecmp(name, "filename*", 9) == 0;
    if (!star && !(namelen == 8 && strncasecmp(name, "filename", 8) == 0)) {
      if (*p == '"') for (p++; *p != '\0' && *p != '"'; p++) if (*p == '\\' && p[1] != '\0') p++;
      p = skip_param(p);
      continue;
    }
    if (star) {              /* charset'language'percent-encoded */
      const char *q1 = strchr(p, '\''), *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
      if (q2 == NULL) { p = skip_param(p); continue; }
      for (p = q2 + 1; *p != '\0' && *p != ';' && !isspace((unsigned char)*p); p++) {
        int c = (unsigned char)*p;
        if (c == '%' && hexval((unsigned char)p[1]) >= 0 && hexval((unsigned char)p[2]) >= 0) {
          c = hexval((unsigned char)p[1]) * 16 + hexval((unsigned char)p[2]);
          p += 2;
        }
        if (o + 1 < outsize) out[o++] = (char)c;
      }
      out[o] = '\0';
      return 1;              /* the extended form wins */
    }
    if (found) { p = skip_param(p); continue; }
    if (*p == '"') {
      for (p++; *p != '\0' && *p != '"'; p++) {
        if (*p == '\\' && p[1] != '\0') p++;
        if (o + 1 < outsize) out[o++] = *p;
      }
      if (*p == '"') p++;
    }
    else for (; *p != '\0' && *p != ';' && !isspace((unsigned char)*p); p++)
      if (o + 1 < outsize) out[o++] = *p;
    out[o] = '\0';
    found = 1;
  }
  return found;
}
