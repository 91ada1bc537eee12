/*
** errors.c: failures that are not HTTP responses come back as nil, detail, kind. The detail says
** what failed in the caller's terms, lowercase, without a final period, and without the kind (the
** kind is the third value). It is not redacted here: the Lua layer redacts every core message with
** its one redaction (lua/wxmedia/redact.lua). No message of the core holds a request URL.
*/
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common.h"

/*
** "Could not resolve" -> "could not resolve", but a proper name or an acronym keeps its case:
** "OpenSSL/3.0", "SSL", "TLS" (a first word with another capital letter in it).
*/
void wxm_lower_first (char *s) {
  size_t i;
  if (!isupper((unsigned char)s[0])) return;
  for (i = 1; s[i] != '\0' && !isspace((unsigned char)s[i]) && s[i] != ':' && s[i] != '/'; i++)
    if (isupper((unsigned char)s[i])) return;
  s[0] = (char)tolower((unsigned char)s[0]);
}

const char *wxm_strerror (int e, char *buf, size_t size) {
  snprintf(buf, size, "%s", strerror(e));
  wxm_lower_first(buf);
  return buf;
}

/* Pushes nil, detail, kind; returns 3, for `return wxm_fail(...)`. */
int wxm_fail (lua_State *L, const char *kind, const char *fmt, ...) {
  char detail[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(detail, sizeof detail, fmt, ap);
  va_end(ap);
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
