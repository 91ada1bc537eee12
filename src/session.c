/*
** session.c: the wxmedia.session userdata. A session owns one CURL easy handle, so consecutive
** calls reuse the connection (TCP and TLS), plus everything libcurl points to during a call.
** Lifetime follows liolib's file handle: created closed with its metatable set before
** curl_easy_init, one idempotent close behind :close(), __gc and __close.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static const char *const option_names[] = {
  "base_url", "timeout", "connect_timeout", "low_speed_limit", "low_speed_time",
  "cainfo", "capath", "proxy", "user_agent", "verify", "fsync", NULL
};

static void session_release (wxm_session *s) {
  if (s->curl != NULL) {
    curl_easy_cleanup(s->curl);   /* before the mime and lists it may still point to */
    s->curl = NULL;
  }
  curl_mime_free(s->mime);
  s->mime = NULL;
  curl_slist_free_all(s->headers);
  s->headers = NULL;
  free(s->base_url);
  s->base_url = NULL;
  wxm_buf_free(&s->body);
}

/*
** The session of a method call, open and idle. A progress function that calls back into its own
** session (a request, or close) would pull the handle from under curl_easy_perform: it raises
** instead, inside the progress function's pcall, and the transfer aborts cleanly.
*/
wxm_session *wxm_check_session (lua_State *L) {
  wxm_session *s = (wxm_session *)luaL_checkudata(L, 1, WXMEDIA_SESSION);
  if (s->curl == NULL) luaL_error(L, "attempt to use a closed " WXMEDIA_SESSION);
  if (s->busy) luaL_error(L, "attempt to use a busy " WXMEDIA_SESSION " (from its own progress function)");
  return s;
}

/* {====== options ====== */

static void check_known_options (lua_State *L, int idx) {
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int known = 0;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *key = lua_tostring(L, -2);
      int i;
      for (i = 0; option_names[i] != NULL; i++)
        if (strcmp(key, option_names[i]) == 0) known = 1;
    }
    if (!known)
      luaL_argerror(L, idx, lua_type(L, -2) == LUA_TSTRING
                              ? lua_pushfstring(L, "unknown option '%s'", lua_tostring(L, -2))
                              : "option names must be strings");
    lua_pop(L, 1);
  }
}

/* Pushes field `key` of the options table; raises if it is neither nil nor of type `type`. */
int wxm_field (lua_State *L, int idx, const char *key, int type) {
  int t;
  lua_getfield(L, idx, key);
  t = lua_type(L, -1);
  if (t != LUA_TNIL && t != type)
    luaL_argerror(L, idx, lua_pushfstring(L, "field '%s': %s expected, got %s", key,
                                          lua_typename(L, type), luaL_typename(L, -1)));
  return t != LUA_TNIL;
}

static double number_option (lua_State *L, int idx, const char *key, double def) {
  double v = def;
  if (idx != 0 && wxm_field(L, idx, key, LUA_TNUMBER)) {
    v = (double)lua_tonumber(L, -1);
    if (!(v >= 0 && v < 1e9))
      luaL_argerror(L, idx, lua_pushfstring(L, "field '%s' out of range", key));
  }
  if (idx != 0) lua_pop(L, 1);
  return v;
}

/* Sets a string option (libcurl copies it); a missing field leaves libcurl's default. */
static CURLcode string_option (lua_State *L, int idx, CURL *curl, const char *key, CURLoption opt) {
  CURLcode rc = CURLE_OK;
  if (idx != 0) {
    if (wxm_field(L, idx, key, LUA_TSTRING)) rc = curl_easy_setopt(curl, opt, lua_tostring(L, -1));
    lua_pop(L, 1);
  }
  return rc;
}

static CURLcode apply_options (lua_State *L, int idx, wxm_session *s) {
  CURL *c = s->curl;
  CURLcode rc = CURLE_OK;
  char ua[128];
  const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);
  long verify = 1;

  snprintf(ua, sizeof ua, "%s (libcurl/%s)", WXMEDIA_UA_PREFIX, info->version);
  if (idx != 0) {
    if (wxm_field(L, idx, "verify", LUA_TBOOLEAN) && !lua_toboolean(L, -1)) verify = 0;
    lua_pop(L, 1);
    if (wxm_field(L, idx, "fsync", LUA_TBOOLEAN) && !lua_toboolean(L, -1)) s->fsync = 0;
    lua_pop(L, 1);
  }
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val)
  /* no signals (threads, OpenResty); timeouts are libcurl's own clocks */
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_TIMEOUT_MS, (long)(number_option(L, idx, "timeout", 0) * 1000));
  SET(CURLOPT_CONNECTTIMEOUT_MS, (long)(number_option(L, idx, "connect_timeout", 10) * 1000));
  SET(CURLOPT_LOW_SPEED_LIMIT, (long)number_option(L, idx, "low_speed_limit", 1));
  SET(CURLOPT_LOW_SPEED_TIME, (long)number_option(L, idx, "low_speed_time", 30));
  SET(CURLOPT_SSL_VERIFYPEER, verify);
  SET(CURLOPT_SSL_VERIFYHOST, verify ? 2L : 0L);
  SET(CURLOPT_USERAGENT, ua);
  SET(CURLOPT_TCP_KEEPALIVE, 1L);
  /* larger reads than libcurl's 16 KiB default, as the curl command uses: fewer write calls */
  SET(CURLOPT_BUFFERSIZE, WXMEDIA_RECV_BUFFER);
  SET(CURLOPT_ERRORBUFFER, s->errbuf);
  /* only HTTP(S), also across redirects (fetch follows a CDN's) */
#if LIBCURL_VERSION_NUM >= 0x075500
  SET(CURLOPT_PROTOCOLS_STR, "http,https");
  SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
  SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
  SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  SET(CURLOPT_MAXREDIRS, 5L);
#undef SET
  if (rc == CURLE_OK) rc = string_option(L, idx, c, "user_agent", CURLOPT_USERAGENT);
  if (rc == CURLE_OK) rc = string_option(L, idx, c, "cainfo", CURLOPT_CAINFO);
  if (rc == CURLE_OK) rc = string_option(L, idx, c, "capath", CURLOPT_CAPATH);
  if (rc == CURLE_OK) rc = string_option(L, idx, c, "proxy", CURLOPT_PROXY);
  return rc;
}

static const char *base_url_option (lua_State *L, int idx) {
  const char *base = WXMEDIA_BASE_URL;
  if (idx != 0 && wxm_field(L, idx, "base_url", LUA_TSTRING)) base = lua_tostring(L, -1);
  return base;   /* when from the table, it stays on the stack until session() returns */
}

/* }====== */

/* core.session([opts]) */
static int session_new (lua_State *L) {
  int idx = 0;
  size_t n;
  const char *base;
  wxm_session *s;
  CURLcode rc;

  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    idx = 1;
    check_known_options(L, idx);
  }
  lua_settop(L, 1);
  base = base_url_option(L, idx);
  s = (wxm_session *)lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);                /* closed: s->curl == NULL */
  s->fsync = 1;
  luaL_setmetatable(L, WXMEDIA_SESSION);
  n = strlen(base);
  while (n > 0 && base[n - 1] == '/') n--;
  if ((s->base_url = (char *)malloc(n + 1)) == NULL) return luaL_error(L, "not enough memory");
  memcpy(s->base_url, base, n);
  s->base_url[n] = '\0';
  if ((s->curl = curl_easy_init()) == NULL) return luaL_error(L, "curl_easy_init failed");
  rc = apply_options(L, idx, s);
  if (rc != CURLE_OK) {
    session_release(s);
    return luaL_error(L, "cannot set session options: %s", curl_easy_strerror(rc));
  }
  return 1;
}

static int session_close (lua_State *L) {
  wxm_session *s = (wxm_session *)luaL_checkudata(L, 1, WXMEDIA_SESSION);
  if (s->busy) luaL_error(L, "attempt to close a busy " WXMEDIA_SESSION " (from its own progress function)");
  session_release(s);
  return 0;
}

static int session_tostring (lua_State *L) {
  wxm_session *s = (wxm_session *)luaL_checkudata(L, 1, WXMEDIA_SESSION);
  if (s->curl == NULL) lua_pushliteral(L, WXMEDIA_SESSION " (closed)");
  else lua_pushfstring(L, WXMEDIA_SESSION " (%p)", (void *)s);
  return 1;
}

static const luaL_Reg methods[] = {
  { "upload", wxm_s_upload },
  { "get", wxm_s_get },
  { "fetch", wxm_s_fetch },
  { "request", wxm_s_request },
  { "close", session_close },
  { NULL, NULL }
};

static const luaL_Reg metamethods[] = {
  { "__gc", session_close },
#if LUA_VERSION_NUM >= 504
  { "__close", session_close },
#endif
  { "__tostring", session_tostring },
  { NULL, NULL }
};

static const luaL_Reg functions[] = {
  { "session", session_new },
  { NULL, NULL }
};

/* Creates the metatable and adds session() to the module table on the top of the stack. */
void wxm_session_open (lua_State *L) {
  luaL_newmetatable(L, WXMEDIA_SESSION);
  luaL_setfuncs(L, metamethods, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, functions, 0);
}
