/*
** transfer.c: one call on a session. The callbacks libcurl runs during curl_easy_perform
** (headers, body, progress), and turning the outcome into Lua values.
** Nothing here raises while libcurl is on the C stack: the progress function runs under
** lua_pcall, and its error is kept and reported after curl_easy_perform returns.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

#define PROGRESS_INTERVAL 0.1   /* seconds: the progress function runs at most ~10 times a second */

void wxm_transfer_init (wxm_transfer *t, lua_State *L, wxm_session *s) {
  memset(t, 0, sizeof *t);
  t->L = L;
  t->s = s;
  t->fd = -1;
  t->max_body = WXMEDIA_MAX_BODY;
  t->mode = WXM_BODY;
}

/* The optional options table at `arg`: its index, or 0 when absent. */
int wxm_table_arg (lua_State *L, int arg) {
  if (lua_isnoneornil(L, arg)) return 0;
  luaL_checktype(L, arg, LUA_TTABLE);
  return arg;
}

/*
** Reads the options every call shares from the table at `opts` (0: none): progress and, when
** allowed, max_body. The progress function stays on the stack, at t->progress, during the call.
*/
void wxm_transfer_options (lua_State *L, wxm_transfer *t, int opts, int allow_max_body) {
  if (opts == 0) return;
  if (allow_max_body) {
    if (wxm_field(L, opts, "max_body", LUA_TNUMBER)) {
      lua_Number n = lua_tonumber(L, -1);
      if (!(n >= 0 && n <= (lua_Number)0x7fffffff))
        luaL_argerror(L, opts, "field 'max_body' out of range");
      t->max_body = (size_t)n;
    }
    lua_pop(L, 1);
  }
  if (wxm_field(L, opts, "progress", LUA_TFUNCTION)) {
    luaL_checkstack(L, 8, "no room for the progress function");
    t->progress = lua_gettop(L);
  }
  else lua_pop(L, 1);
}

/* {====== callbacks ====== */

int wxm_body_add (wxm_transfer *t, const char *p, size_t n) {
  if (!wxm_body_fits(t->s->body.len, n, t->max_body)) {
    t->over_cap = 1;
    return 0;
  }
  if (!wxm_buf_add(&t->s->body, p, n)) {
    t->io_errno = ENOMEM;
    return 0;
  }
  return 1;
}

static size_t write_cb (char *p, size_t size, size_t nmemb, void *ud) {
  wxm_transfer *t = (wxm_transfer *)ud;
  size_t n = size * nmemb;
  if (t->write != NULL) return t->write(t, p, n);
  return wxm_body_add(t, p, n) ? n : 0;
}

/* Keeps the final response's Content-Disposition (WeChat spells it "Content-disposition"). */
static size_t header_cb (char *p, size_t size, size_t nmemb, void *ud) {
  wxm_transfer *t = (wxm_transfer *)ud;
  size_t n = size * nmemb;
  if (wxm_header_starts_response(p, n)) {       /* a new response (100, a redirect, the final) */
    t->has_cd = 0;
    t->cd[0] = '\0';
  }
  else if (wxm_header_cd(p, n, t->cd, sizeof t->cd)) t->has_cd = 1;
  return n;
}

static void keep_callback_error (wxm_transfer *t) {
  lua_State *L = t->L;
  const char *msg = lua_tostring(L, -1);   /* a string or a number; no metamethods here */
  if (msg != NULL) snprintf(t->cb_error, sizeof t->cb_error, "%s", msg);
  else snprintf(t->cb_error, sizeof t->cb_error, "(error object is a %s value)", luaL_typename(L, -1));
  lua_pop(L, 1);
}

static int xferinfo_cb (void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                        curl_off_t ulnow) {
  wxm_transfer *t = (wxm_transfer *)ud;
  lua_State *L = t->L;
  double now = wxm_monotonic();
  /* the moment a direction completes is always reported, so the last call shows the totals */
  int done = (dltotal > 0 && dlnow == dltotal && dlnow != t->progress_dl)
          || (ultotal > 0 && ulnow == ultotal && ulnow != t->progress_ul);
  int stop;
  if (t->progress_at > 0 && now - t->progress_at < PROGRESS_INTERVAL && !done) return 0;
  t->progress_at = now;
  t->progress_dl = dlnow;
  t->progress_ul = ulnow;
  lua_pushvalue(L, t->progress);
  lua_pushnumber(L, (lua_Number)dltotal);
  lua_pushnumber(L, (lua_Number)dlnow);
  lua_pushnumber(L, (lua_Number)ultotal);
  lua_pushnumber(L, (lua_Number)ulnow);
  if (lua_pcall(L, 4, 1, 0) != LUA_OK) {
    keep_callback_error(t);
    t->aborted = WXM_ABORT_ERROR;
    return 1;
  }
  stop = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (stop) t->aborted = WXM_ABORT_FALSE;
  return stop;
}

/* }====== */

/*
** Runs the call. L is the state (or coroutine) of this very call: the progress function runs in
** it, so it is set right before curl_easy_perform, never kept from an earlier call.
*/
CURLcode wxm_perform (lua_State *L, wxm_transfer *t) {
  CURL *c = t->s->curl;
  CURLcode rc = CURLE_OK;
  t->s->errbuf[0] = '\0';
  wxm_buf_reset(&t->s->body);
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val)
  SET(CURLOPT_WRITEFUNCTION, write_cb);
  SET(CURLOPT_WRITEDATA, (void *)t);
  SET(CURLOPT_HEADERFUNCTION, header_cb);
  SET(CURLOPT_HEADERDATA, (void *)t);
  SET(CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
  SET(CURLOPT_XFERINFODATA, (void *)t);
  SET(CURLOPT_NOPROGRESS, t->progress ? 0L : 1L);
  SET(CURLOPT_HTTPHEADER, t->s->headers);
  SET(CURLOPT_FOLLOWLOCATION, t->follow ? 1L : 0L);
#undef SET
  if (rc != CURLE_OK) return rc;
  t->s->busy = 1;
  t->L = L;
  rc = curl_easy_perform(c);
  t->s->busy = 0;
  return rc;
}

/* Frees what the call attached to the handle, and removes a temp file that was not renamed. */
void wxm_transfer_end (wxm_transfer *t) {
  wxm_session *s = t->s;
  if (s->mime != NULL) {
    curl_easy_setopt(s->curl, CURLOPT_MIMEPOST, (curl_mime *)NULL);
    curl_mime_free(s->mime);
    s->mime = NULL;
  }
  if (s->headers != NULL) {
    curl_easy_setopt(s->curl, CURLOPT_HTTPHEADER, (struct curl_slist *)NULL);
    curl_slist_free_all(s->headers);
    s->headers = NULL;
  }
  if (t->fd >= 0) {
    close(t->fd);
    t->fd = -1;
  }
  if (t->tmp_path != NULL) {
    unlink(t->tmp_path);
    free(t->tmp_path);
    t->tmp_path = NULL;
  }
}

long wxm_status (wxm_transfer *t) {
  long status = 0;
  curl_easy_getinfo(t->s->curl, CURLINFO_RESPONSE_CODE, &status);
  return status;
}

const char *wxm_content_type (wxm_transfer *t) {
  char *ct = NULL;
  curl_easy_getinfo(t->s->curl, CURLINFO_CONTENT_TYPE, &ct);
  return ct;
}

/* A failure found inside a callback (the first one wins), reported once perform returned. */
void wxm_defer (wxm_transfer *t, const char *kind, const char *fmt, ...) {
  va_list ap;
  if (t->fail_kind != NULL) return;
  t->fail_kind = kind;
  va_start(ap, fmt);
  vsnprintf(t->fail_msg, sizeof t->fail_msg, fmt, ap);
  va_end(ap);
}

/*
** libcurl's sentences in our style: "Operation too slow. Less than" becomes "operation too slow:
** less than", "port 1 after 0 ms: Couldn't connect" "...: couldn't connect", no final period.
*/
static void tidy_curl_text (char *s) {
  char *p;
  size_t n;
  wxm_lower_first(s);
  for (p = s; *p != '\0'; p++) {
    if ((p[0] == '.' || p[0] == ':') && p[1] == ' ') {
      p[0] = ':';
      wxm_lower_first(p + 2);
    }
  }
  n = strlen(s);
  while (n > 0 && (s[n - 1] == '.' || s[n - 1] == '\n' || s[n - 1] == ' ')) s[--n] = '\0';
}

/*
** An https URL to a plain HTTP port: OpenSSL reads "HTTP/1.1 400" as a TLS record of a wrong
** version. Said in the caller's terms, with the host and port from the URL (never its query).
*/
static int push_not_tls (lua_State *L, wxm_transfer *t) {
  char *url = NULL, *host = NULL, *port = NULL;
  CURLU *u = curl_url();
  int n;
  curl_easy_getinfo(t->s->curl, CURLINFO_EFFECTIVE_URL, &url);
  if (u != NULL && url != NULL && curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
    (void)curl_url_get(u, CURLUPART_HOST, &host, 0);
    (void)curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT);
  }
  n = wxm_fail(L, "tls", "the server at %s:%s does not speak TLS (is the URL http://?)",
               host ? host : "?", port ? port : "?");
  curl_free(host);
  curl_free(port);
  curl_url_cleanup(u);
  return n;
}

/* nil, message, kind for a call that got no usable HTTP response. Call wxm_transfer_end first. */
int wxm_push_failure (lua_State *L, wxm_transfer *t, CURLcode rc) {
  char detail[CURL_ERROR_SIZE];
  snprintf(detail, sizeof detail, "%s", t->s->errbuf[0] != '\0' ? t->s->errbuf : curl_easy_strerror(rc));
  tidy_curl_text(detail);
  wxm_buf_reset(&t->s->body);
  if (t->fail_kind != NULL) return wxm_fail(L, t->fail_kind, "%s", t->fail_msg);
  if (rc == CURLE_ABORTED_BY_CALLBACK && t->aborted == WXM_ABORT_FALSE)
    return wxm_fail(L, "aborted", "the transfer was stopped by the progress function");
  if (rc == CURLE_ABORTED_BY_CALLBACK && t->aborted == WXM_ABORT_ERROR)
    return wxm_fail(L, "aborted", "the progress function raised an error: %s", t->cb_error);
  if (rc == CURLE_WRITE_ERROR && t->over_cap)
    return wxm_fail(L, "transfer", "the answer (HTTP %ld) was over the cap of %lu bytes for a body kept in memory",
                    wxm_status(t), (unsigned long)t->max_body);
  if (rc == CURLE_WRITE_ERROR && t->io_errno != 0)
    return wxm_fail(L, "io", "cannot write %s: %s", t->path ? t->path : "the response body",
                    WXM_STRERROR(t->io_errno));
  if (rc == CURLE_READ_ERROR && t->upload_path != NULL)
    return wxm_fail(L, "input", "cannot read %s: %s", t->upload_path, detail);
  if (rc == CURLE_SSL_CONNECT_ERROR && strstr(detail, "wrong version number") != NULL)
    return push_not_tls(L, t);
  return wxm_fail(L, wxm_kind_of(rc), "%s", detail);
}

/* { status = N, content_type = "...", body = "..." } */
int wxm_push_body_result (lua_State *L, wxm_transfer *t) {
  const char *ct = wxm_content_type(t);
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)wxm_status(t));
  lua_setfield(L, -2, "status");
  if (ct != NULL) {
    lua_pushstring(L, ct);
    lua_setfield(L, -2, "content_type");
  }
  lua_pushlstring(L, t->s->body.data ? t->s->body.data : "", t->s->body.len);
  lua_setfield(L, -2, "body");
  wxm_buf_reset(&t->s->body);
  return 1;
}
