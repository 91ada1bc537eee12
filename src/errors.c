/*
** errors.c: failures that are not HTTP responses come back as nil, "<kind>: <detail>", "<kind>".
** Every message goes through wxm_redact, so no access_token or secret ever reaches the caller.
*/
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common.h"

/* Keys whose values are secrets wherever they appear in a URL or a query string. */
static const char *const secret_keys[] = { "access_token=", "secret=", NULL };

static size_t secret_key_at (const char *s) {
  int i;
  for (i = 0; secret_keys[i] != NULL; i++) {
    size_t n = strlen(secret_keys[i]);
    if (strncasecmp(s, secret_keys[i], n) == 0) return n;
  }
  return 0;
}

static int ends_value (char c) {
  return c == '\0' || c == '&' || c == '#' || c == '"' || c == '\'' || c == '<' || c == '>'
      || c == ')' || isspace((unsigned char)c);
}

/* Copies in to out (always terminated, truncated if needed), each secret value made "REDACTED". */
void wxm_redact (char *out, size_t outsize, const char *in) {
  size_t o = 0;
  if (outsize == 0) return;
  while (*in != '\0' && o + 1 < outsize) {
    size_t k = secret_key_at(in);
    if (k > 0) {
      const char *mark = "REDACTED";
      size_t i;
      for (i = 0; i < k && o + 1 < outsize; i++) out[o++] = *in++;
      while (!ends_value(*in)) in++;
      while (*mark != '\0' && o + 1 < outsize) out[o++] = *mark++;
    }
    else out[o++] = *in++;
  }
  out[o] = '\0';
}

void wxm_lower_first (char *s) {
  if (s[0] != '\0' && isupper((unsigned char)s[0]) && !isupper((unsigned char)s[1]))
    s[0] = (char)tolower((unsigned char)s[0]);
}

const char *wxm_strerror (int e, char *buf, size_t size) {
  snprintf(buf, size, "%s", strerror(e));
  wxm_lower_first(buf);
  return buf;
}

/* Pushes nil, "<kind>: <detail>" (redacted), kind; returns 3, for `return wxm_fail(...)`. */
int wxm_fail (lua_State *L, const char *kind, const char *fmt, ...) {
  char detail[1024], msg[1280];
  size_t n;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
  n = strlen(detail);
  while (n > 0 && (detail[n - 1] == '\n' || detail[n - 1] == '.' || detail[n - 1] == ' '))
    detail[--n] = '\0';
  wxm_lower_first(detail);
  snprintf(msg, sizeof msg, "%s: %s", kind, detail);
  wxm_redact(detail, sizeof detail, msg);
  luaL_pushfail(L);
  lua_pushstring(L, detail);
  lua_pushstring(L, kind);
  return 3;
}

/* The kind of a libcurl failure; the callers refine WRITE_ERROR, READ_ERROR and ABORTED first. */
const char *wxm_kind_of (CURLcode rc) {
  switch (rc) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return "connect";
    case CURLE_OPERATION_TIMEDOUT:
      return "timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_USE_SSL_FAILED:
      return "tls";
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_READ_ERROR:
      return "input";
    case CURLE_ABORTED_BY_CALLBACK:
      return "aborted";
    default:   /* RECV_ERROR, SEND_ERROR, PARTIAL_FILE, GOT_NOTHING, WEIRD_SERVER_REPLY, ... */
      return "transfer";
  }
}
