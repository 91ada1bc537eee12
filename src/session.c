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

/*
** The session options, in one array: session() checks a table against it, applies it, and the
** module exports it as core.SESSION_OPTIONS (name -> Lua type name), so the Lua layer cannot list
** other options than these. Numbers have a default and a scale (seconds to ms); a string option
** left out keeps libcurl's default; base_url, verify and fsync are the session's own (curl = 0).
** An option string holding a NUL byte raises (misuse, like a wrong type): it is the program's
** configuration, not a value from the world (those come back as nil, message, "input").
*/
static const struct session_option {
  const char *name;
  int type;                       /* LUA_TSTRING, LUA_TNUMBER or LUA_TBOOLEAN */
  CURLoption curl;
  double def, scale;
} options[] = {
  { "base_url", LUA_TSTRING, (CURLoption)0, 0, 0 },
  { "timeout", LUA_TNUMBER, CURLOPT_TIMEOUT_MS, 0, 1000 },              /* none */
  { "connect_timeout", LUA_TNUMBER, CURLOPT_CONNECTTIMEOUT_MS, 10, 1000 },
  /* a stall that lasts: under 1 KiB/s for 30 s (libcurl's default, 1 B/s, let a drip run forever) */
  { "low_speed_limit", LUA_TNUMBER, CURLOPT_LOW_SPEED_LIMIT, 1024, 1 },
  { "low_speed_time", LUA_TNUMBER, CURLOPT_LOW_SPEED_TIME, 30, 1 },
  { "cainfo", LUA_TSTRING, CURLOPT_CAINFO, 0, 0 },
  { "capath", LUA_TSTRING, CURLOPT_CAPATH, 0, 0 },
  { "proxy", LUA_TSTRING, CURLOPT_PROXY, 0, 0 },
  { "user_agent", LUA_TSTRING, CURLOPT_USERAGENT, 0, 0 },
  { "verify", LUA_TBOOLEAN, (CURLoption)0, 0, 0 },
  { "fsync", LUA_TBOOLEAN, (CURLoption)0, 0, 0 },
  { NULL, LUA_TNIL, (CURLoption)0, 0, 0 }
};

void wxm_session_release (wxm_session *s) {
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
  wxm_buf_free(&s->upload_url);
  wxm_buf_free(&s->upload_key);
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

void wxm_session_check_options (lua_State *L, int idx) {
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    int known = 0;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *key = lua_tostring(L, -2);
      const struct session_option *o;
      for (o = options; o->name != NULL; o++)
        if (strcmp(key, o->name) == 0) known = 1;
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

/* A boolean field of the options table at idx (0: no table): 1 when true; raises if neither nil nor
   a boolean. Pushes nothing. */
int wxm_flag (lua_State *L, int idx, const char *key) {
  int on;
  if (idx == 0) return 0;
  on = wxm_field(L, idx, key, LUA_TBOOLEAN) && lua_toboolean(L, -1);
  lua_pop(L, 1);
  return on;
}

/* Pushes option o's value from the table at idx (0: none), checked; returns 0 when absent. */
static int option_value (lua_State *L, int idx, const struct session_option *o) {
  if (idx == 0) {
    lua_pushnil(L);
    return 0;
  }
  if (!wxm_field(L, idx, o->name, o->type)) return 0;
  if (o->type == LUA_TNUMBER) {
    double v = (double)lua_tonumber(L, -1);
    if (!(v >= 0 && v < 1e9))
      luaL_argerror(L, idx, lua_pushfstring(L, "field '%s' out of range", o->name));
  }
  else if (o->type == LUA_TSTRING) {
    size_t len;
    const char *v = lua_tolstring(L, -1, &len);
    if (strlen(v) != len)
      luaL_argerror(L, idx, lua_pushfstring(L, "field '%s' holds a NUL byte", o->name));
  }
  return 1;
}

/* Checks every option, then sets the handle's: the session's defaults, then the table's. */
static CURLcode apply_options (lua_State *L, int idx, wxm_session *s) {
  CURL *c = s->curl;
  CURLcode rc = CURLE_OK;
  char ua[128];
  const curl_version_info_data *info = curl_version_info(CURLVERSION_NOW);
  const struct session_option *o;

  snprintf(ua, sizeof ua, "%s (libcurl/%s)", WXMEDIA_UA_PREFIX, info->version);
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val)
  /* no signals (threads, OpenResty); timeouts are libcurl's own clocks */
  SET(CURLOPT_NOSIGNAL, 1L);
  SET(CURLOPT_SSL_VERIFYPEER, 1L);
  SET(CURLOPT_SSL_VERIFYHOST, 2L);
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
  for (o = options; o->name != NULL && rc == CURLE_OK; o++) {
    int present = option_value(L, idx, o);
    if (o->type == LUA_TNUMBER) {
      double v = present ? (double)lua_tonumber(L, -1) : o->def;
      rc = curl_easy_setopt(c, o->curl, (long)(v * o->scale));
    }
    else if (present && o->curl != (CURLoption)0)      /* a string libcurl copies */
      rc = curl_easy_setopt(c, o->curl, lua_tostring(L, -1));
    else if (present && strcmp(o->name, "verify") == 0 && !lua_toboolean(L, -1)) {
      rc = curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 0L);
      if (rc == CURLE_OK) rc = curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    else if (present && strcmp(o->name, "fsync") == 0) s->fsync = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  return rc;
}

/* The base URL without its trailing slashes, malloc'd into s->base_url; 0 when out of memory. */
static int set_base_url (lua_State *L, int idx, wxm_session *s) {
  const char *base = WXMEDIA_BASE_URL;
  size_t n;
  if (option_value(L, idx, &options[0])) base = lua_tostring(L, -1);
  n = strlen(base);
  while (n > 0 && base[n - 1] == '/') n--;
  s->base_url = (char *)malloc(n + 1);
  if (s->base_url != NULL) {
    memcpy(s->base_url, base, n);
    s->base_url[n] = '\0';
  }
  lua_pop(L, 1);
  return s->base_url != NULL;
}

/* }====== */

/*
** Makes s (zeroed, owned by a userdata whose __gc releases it) a ready session: its base URL, an
** easy handle, the options of the table at idx (0: none, else checked by
** wxm_session_check_options). Raises on failure. Also used for the easy handles of a multi.
*/
void wxm_session_setup (lua_State *L, int idx, wxm_session *s) {
  CURLcode rc;
  s->fsync = 1;
  if (!set_base_url(L, idx, s)) luaL_error(L, "not enough memory");
  if ((s->curl = curl_easy_init()) == NULL) luaL_error(L, "curl_easy_init failed");
  rc = apply_options(L, idx, s);
  if (rc != CURLE_OK) {
    wxm_session_release(s);
    luaL_error(L, "cannot set session options: %s", curl_easy_strerror(rc));
  }
}

/* core.session([opts]) */
static int session_new (lua_State *L) {
  int idx = 0;
  wxm_session *s;

  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    idx = 1;
    wxm_session_check_options(L, idx);
  }
  lua_settop(L, 1);
  s = (wxm_session *)lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);                /* closed: s->curl == NULL */
  luaL_setmetatable(L, WXMEDIA_SESSION);
  wxm_session_setup(L, idx, s);
  return 1;
}

static int session_close (lua_State *L) {
  wxm_session *s = (wxm_session *)luaL_checkudata(L, 1, WXMEDIA_SESSION);
  if (s->busy) luaL_error(L, "attempt to close a busy " WXMEDIA_SESSION " (from its own progress function)");
  wxm_session_release(s);
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

/*
** Creates the metatable and adds to the module table on the top of the stack: session(),
** SESSION_OPTIONS (name -> "string"|"number"|"boolean"), SESSION_DEFAULTS (name -> the default of
** each number option, 0 for none) and DEFAULT_BASE_URL.
*/
void wxm_session_open (lua_State *L) {
  const struct session_option *o;
  luaL_newmetatable(L, WXMEDIA_SESSION);
  luaL_setfuncs(L, metamethods, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, functions, 0);
  lua_newtable(L);
  for (o = options; o->name != NULL; o++) {
    lua_pushstring(L, lua_typename(L, o->type));
    lua_setfield(L, -2, o->name);
  }
  lua_setfield(L, -2, "SESSION_OPTIONS");
  lua_newtable(L);
  for (o = options; o->name != NULL; o++) {
    if (o->type != LUA_TNUMBER) continue;
    lua_pushnumber(L, o->def);
    lua_setfield(L, -2, o->name);
  }
  lua_setfield(L, -2, "SESSION_DEFAULTS");
  lua_pushliteral(L, WXMEDIA_BASE_URL);
  lua_setfield(L, -2, "DEFAULT_BASE_URL");
}
