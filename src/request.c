/*
** request.c: s:request, the small calls of the token endpoints (GET, or POST with a body).
*/
#include <string.h>

#include "common.h"

static const char *const methods[] = { "GET", "POST", NULL };

/* Raises unless every key is a string and every value a string or a number. */
static void check_query_types (lua_State *L, int query) {
  lua_pushnil(L);
  while (lua_next(L, query) != 0) {
    int vt = lua_type(L, -1);
    if (lua_type(L, -2) != LUA_TSTRING || (vt != LUA_TSTRING && vt != LUA_TNUMBER))
      luaL_argerror(L, 4, "field 'query': string keys with string or number values expected");
    lua_pop(L, 1);
  }
}

/* 0, or 3 with nil, message, "input" pushed when a name or a value holds a NUL byte. */
static int check_query_nul (lua_State *L, int query) {
  lua_pushnil(L);
  while (lua_next(L, query) != 0) {
    size_t klen, vlen;
    const char *key = lua_tolstring(L, -2, &klen);
    if (WXM_HAS_NUL(key, klen)) return wxm_fail(L, "input", "a query parameter's name holds a NUL byte");
    if (lua_type(L, -1) == LUA_TSTRING && WXM_HAS_NUL(lua_tolstring(L, -1, &vlen), vlen))
      return wxm_fail(L, "input", "the query parameter %s holds a NUL byte", key);
    lua_pop(L, 1);
  }
  return 0;
}

/* Appends each query pair to the URL in b; nothing raises here (values were checked). */
static int add_query (lua_State *L, int query, wxm_buf *b, CURL *curl) {
  int ok = 1;
  lua_pushnil(L);
  while (lua_next(L, query) != 0) {
    size_t vlen;
    const char *v;
    lua_pushvalue(L, -1);                 /* convert a number on a copy, never on the key */
    v = lua_tolstring(L, -1, &vlen);
    if (ok) ok = wxm_url_param(b, curl, lua_tostring(L, -3), v, vlen);
    lua_pop(L, 2);
  }
  return ok;
}

static int has_newline (const char *s) {
  return strchr(s, '\r') != NULL || strchr(s, '\n') != NULL;
}

/* s:request(method, path_or_url [, opts]) */
int wxm_s_request (lua_State *L) {
  wxm_session *s = wxm_check_session(L);
  int post = luaL_checkoption(L, 2, NULL, methods) == 1;
  size_t pathlen, ctlen = 0;
  const char *path = luaL_checklstring(L, 3, &pathlen);
  int opts = wxm_table_arg(L, 4), query = 0, failed = 0;
  const char *body = NULL, *ctype = NULL;
  size_t bodylen = 0;
  CURLcode rc;
  wxm_transfer t;

  wxm_transfer_init(&t, L, s);
  if (opts != 0) {
    if (wxm_field(L, opts, "query", LUA_TTABLE)) {
      query = lua_gettop(L);
      check_query_types(L, query);
    }
    if (wxm_field(L, opts, "body", LUA_TSTRING)) body = lua_tolstring(L, -1, &bodylen);
    if (wxm_field(L, opts, "content_type", LUA_TSTRING)) ctype = lua_tolstring(L, -1, &ctlen);
    if (ctype != NULL && has_newline(ctype))
      luaL_argerror(L, opts, "field 'content_type' must not contain a line break");
    if (body != NULL && !post) luaL_argerror(L, opts, "field 'body': a GET has no body");
  }
  wxm_transfer_options(L, &t, opts, 1);
  if (query && (failed = check_query_nul(L, query)) != 0) return failed;
  if (WXM_HAS_NUL(path, pathlen)) return wxm_fail(L, "input", "the request path holds a NUL byte");
  if (ctype != NULL && WXM_HAS_NUL(ctype, ctlen))
    return wxm_fail(L, "input", "the content_type holds a NUL byte");

  wxm_buf_reset(&s->body);
  if (!wxm_url_join(&s->body, s->base_url, path) || (query && !add_query(L, query, &s->body, s->curl))
      || !wxm_url_terminate(&s->body))
    return luaL_error(L, "not enough memory");
  rc = curl_easy_setopt(s->curl, CURLOPT_URL, s->body.data);
  if (rc == CURLE_OK && post) {
    char header[512];
    if (ctype == NULL && body != NULL) ctype = "application/json";
    /* without a body and a type, no Content-Type at all (libcurl would say form-urlencoded) */
    if (ctype == NULL) strcpy(header, "Content-Type:");
    else if (strlen(ctype) + 15 > sizeof header) return luaL_argerror(L, opts, "field 'content_type' too long");
    else {
      strcpy(header, "Content-Type: ");
      strcat(header, ctype);
    }
    if ((s->headers = curl_slist_append(NULL, header)) == NULL) rc = CURLE_OUT_OF_MEMORY;
    if (rc == CURLE_OK) rc = curl_easy_setopt(s->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)bodylen);
    if (rc == CURLE_OK) rc = curl_easy_setopt(s->curl, CURLOPT_COPYPOSTFIELDS, body ? body : "");
  }
  else if (rc == CURLE_OK) rc = curl_easy_setopt(s->curl, CURLOPT_HTTPGET, 1L);
  if (rc == CURLE_OK) rc = wxm_perform(L, &t);
  wxm_transfer_end(&t);
  if (rc != CURLE_OK || t.aborted != WXM_NOT_ABORTED) return wxm_push_failure(L, &t, rc);
  return wxm_push_body_result(L, &t);
}
