/*
** transfer.c: one call on a session. The callbacks libcurl runs during curl_easy_perform
** (headers, body, progress, the address checks of fetch), and turning the outcome into Lua values.
** Nothing raises while libcurl is on the C stack: every Lua callback runs under lua_pcall; its
** error is kept on the Lua stack and raised again once curl_easy_perform returned and the call's
** C resources (temp file, form, headers, open files) are released.
*/
#include <errno.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"

/* seconds: the progress function (or the no-op) runs at most ~10 times a second */
#define TICK_INTERVAL 0.1

/* The registry key of the no-op Lua function a transfer calls when it has no progress function. */
static char tick_key;   /* only its address is used */

/*
** lua.c and luajit.c take Ctrl-C by setting a hook that raises "interrupted!" at the next Lua
** call or instruction; inside curl_easy_perform no Lua runs, so a long download would not see it
** until it ended (and was renamed into place). A transfer therefore calls Lua ~10 times a second:
** the caller's progress function, or this empty function. Either may raise; the transfer then
** stops, cleans up, and the error is raised again to the caller.
*/
void wxm_transfer_open (lua_State *L) {
  lua_pushlightuserdata(L, (void *)&tick_key);
  if (luaL_loadbuffer(L, "", 0, "=wxmedia.core") != LUA_OK) lua_error(L);
  lua_rawset(L, LUA_REGISTRYINDEX);
}

/* Pushes the no-op tick (multi.c calls it between the rounds of its transfers). */
void wxm_push_noop (lua_State *L) {
  lua_pushlightuserdata(L, (void *)&tick_key);
  lua_rawget(L, LUA_REGISTRYINDEX);
}

void wxm_transfer_init (wxm_transfer *t, lua_State *L, wxm_session *s) {
  wxm_temp none = WXM_TEMP_NONE;
  /* 2 KiB of buffers are only read once written: cleared to their first byte (an upload's cost) */
  memset(t, 0, offsetof(wxm_transfer, fail_msg));
  t->fail_msg[0] = t->cd[0] = '\0';
  t->L = L;
  t->s = s;
  t->fd = -1;
  t->upload_fd = -1;
  t->tmp = none;
  t->replace_mode = -1;
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
** allowed, max_body. Then keeps on the stack, for the call's duration: the tick function (progress
** or the no-op), a slot for an error a callback raises, and a slot for a value to keep alive.
*/
void wxm_transfer_options (lua_State *L, wxm_transfer *t, int opts, int allow_max_body) {
  luaL_checkstack(L, 24, "no room for a transfer");
  if (opts != 0 && allow_max_body) {
    if (wxm_field(L, opts, "max_body", LUA_TNUMBER)) {
      lua_Number n = lua_tonumber(L, -1);
      if (!(n >= 0 && n <= (lua_Number)0x7fffffff))
        luaL_argerror(L, opts, "field 'max_body' out of range");
      t->max_body = (size_t)n;
    }
    lua_pop(L, 1);
  }
  if (opts != 0 && wxm_field(L, opts, "progress", LUA_TFUNCTION)) t->progress = 1;
  else {
    if (opts != 0) lua_pop(L, 1);
    lua_pushlightuserdata(L, (void *)&tick_key);
    lua_rawget(L, LUA_REGISTRYINDEX);
  }
  t->tick = lua_gettop(L);
  lua_pushnil(L);
  t->raised = lua_gettop(L);
  lua_pushnil(L);
  t->keep = lua_gettop(L);
}

/*
** Calls the function below its nargs arguments under lua_pcall, from a libcurl callback: an error
** never unwinds through libcurl. It is kept in the `raised` slot for after cleanup; returns 0.
*/
int wxm_call (wxm_transfer *t, int nargs, int nresults) {
  lua_State *L = t->L;
  if (lua_pcall(L, nargs, nresults, 0) != LUA_OK) {
    lua_replace(L, t->raised);
    t->aborted = WXM_ABORT_ERROR;
    return 0;
  }
  return 1;
}

/* {====== callbacks ====== */

int wxm_body_add (wxm_transfer *t, const char *p, size_t n) {
  if (!wxm_body_fits(t->s->body.len, n, t->max_body)) {
    t->over_cap = 1;
    return 0;
  }
  if (!wxm_buf_add(&t->s->body, p, n)) {
    wxm_defer(t, "io", "not enough memory for the answer's body");
    return 0;
  }
  return 1;
}

static size_t write_cb (char *p, size_t size, size_t nmemb, void *ud) {
  wxm_transfer *t = (wxm_transfer *)ud;
  size_t n = size * nmemb;
  if (t->aborted != WXM_NOT_ABORTED) return 0;        /* stopped (multi.c's cancel): no Lua */
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

/* Checks the monotonic clock first: Lua runs at most every TICK_INTERVAL, plus the final totals. */
static int xferinfo_cb (void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                        curl_off_t ulnow) {
  wxm_transfer *t = (wxm_transfer *)ud;
  lua_State *L = t->L;
  /* the moment a direction completes is always reported, so the last call shows the totals */
  int done = t->progress && ((dltotal > 0 && dlnow == dltotal && dlnow != t->progress_dl)
          || (ultotal > 0 && ulnow == ultotal && ulnow != t->progress_ul));
  int stop;
  double now;
  if (t->aborted != WXM_NOT_ABORTED) return 1;
  now = wxm_monotonic();
  if (t->tick_at > 0 && now - t->tick_at < TICK_INTERVAL && !done) return 0;
  t->tick_at = now;
  lua_pushvalue(L, t->tick);
  if (!t->progress) return wxm_call(t, 0, 0) ? 0 : 1;
  t->progress_dl = dlnow;
  t->progress_ul = ulnow;
  lua_pushnumber(L, (lua_Number)dltotal);
  lua_pushnumber(L, (lua_Number)dlnow);
  lua_pushnumber(L, (lua_Number)ultotal);
  lua_pushnumber(L, (lua_Number)ulnow);
  if (!wxm_call(t, 4, 1)) return 1;
  stop = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (stop) t->aborted = WXM_ABORT_FALSE;
  return stop;
}

/*
** fetch without allow_private: every address libcurl is about to connect to (each redirect hop,
** each address of a name) is checked before the socket exists...
*/
static curl_socket_t open_socket_cb (void *ud, curlsocktype purpose, struct curl_sockaddr *a) {
  wxm_transfer *t = (wxm_transfer *)ud;
  (void)purpose;
  if (wxm_address_private(&a->addr, t->blocked, sizeof t->blocked)) return CURL_SOCKET_BAD;
  return socket(a->family, a->socktype | SOCK_CLOEXEC, a->protocol);
}

#if LIBCURL_VERSION_NUM >= 0x075000
/*
** ...and every request, just before it is sent, on the connection it goes out on: one reused from
** an earlier call of the session (to the base URL, say) never went through open_socket_cb.
** Behind a proxy, both see the proxy's address: a proxy on a private address needs allow_private.
*/
static int prereq_cb (void *ud, char *ip, char *local_ip, int port, int local_port) {
  wxm_transfer *t = (wxm_transfer *)ud;
  (void)local_ip; (void)port; (void)local_port;
  if (!wxm_address_private_text(ip)) return CURL_PREREQFUNC_OK;
  snprintf(t->blocked, sizeof t->blocked, "%s", ip);
  return CURL_PREREQFUNC_ABORT;
}
#endif

/* }====== */

/* Points the handle's callbacks at t (and the call's headers): before a perform or a multi add. */
CURLcode wxm_transfer_attach (wxm_transfer *t) {
  CURL *c = t->s->curl;
  CURLcode rc = CURLE_OK;
  int guard = t->block_private;
  t->s->errbuf[0] = '\0';
  wxm_buf_reset(&t->s->body);
#define SET(opt, val) if (rc == CURLE_OK) rc = curl_easy_setopt(c, opt, val)
  SET(CURLOPT_WRITEFUNCTION, write_cb);
  SET(CURLOPT_WRITEDATA, (void *)t);
  /* a download's Content-Disposition; an upload's or a request's answer has no use for one (and
     without a header function, the header data must be NULL too, or libcurl writes the headers
     into the body) */
  SET(CURLOPT_HEADERFUNCTION, t->write != NULL ? header_cb : (curl_write_callback)NULL);
  SET(CURLOPT_HEADERDATA, t->write != NULL ? (void *)t : NULL);
  SET(CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
  SET(CURLOPT_XFERINFODATA, (void *)t);
  SET(CURLOPT_NOPROGRESS, 0L);          /* always: the tick runs during every transfer */
  SET(CURLOPT_HTTPHEADER, t->s->headers);
  SET(CURLOPT_FOLLOWLOCATION, t->follow ? 1L : 0L);
  SET(CURLOPT_OPENSOCKETFUNCTION, guard ? open_socket_cb : (curl_opensocket_callback)NULL);
  SET(CURLOPT_OPENSOCKETDATA, (void *)t);
#if LIBCURL_VERSION_NUM >= 0x075000
  SET(CURLOPT_PREREQFUNCTION, guard ? prereq_cb : (curl_prereq_callback)NULL);
  SET(CURLOPT_PREREQDATA, (void *)t);
#else
  SET(CURLOPT_FRESH_CONNECT, guard ? 1L : 0L);     /* no reused connection to check */
#endif
#undef SET
  return rc;
}

/*
** Runs the call. L is the state (or coroutine) of this very call: the Lua callbacks run in it, so
** it is set right before curl_easy_perform, never kept from an earlier call.
*/
CURLcode wxm_perform (lua_State *L, wxm_transfer *t) {
  CURLcode rc = wxm_transfer_attach(t);
  if (rc != CURLE_OK) return rc;
  t->s->busy = 1;
  t->L = L;
  rc = curl_easy_perform(t->s->curl);
  t->s->busy = 0;
  return rc;
}

/* Frees what the call attached to the handle, closes its files and removes a temp file left. */
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
  if (t->upload_fd >= 0) {
    close(t->upload_fd);
    t->upload_fd = -1;
  }
  if (t->in_place && t->fd >= 0) close(t->fd);
  t->fd = -1;
  wxm_temp_discard(&t->tmp);
  free(t->target);
  t->target = NULL;
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

/* The private address fetch refused, in a sentence (blocked). */
static int push_blocked (lua_State *L, wxm_transfer *t) {
  long redirects = 0;
  curl_easy_getinfo(t->s->curl, CURLINFO_REDIRECT_COUNT, &redirects);
  return wxm_fail(L, "blocked", "the URL %s a private address (%s); fetch needs allow_private for it",
                  redirects > 0 ? "redirects to" : "points to", t->blocked);
}

/*
** nil, message, kind for a call that got no usable HTTP response; or, when a Lua callback raised,
** that very error raised again. Call wxm_transfer_end first: nothing of C is left to free.
*/
int wxm_push_failure (lua_State *L, wxm_transfer *t, CURLcode rc) {
  char detail[CURL_ERROR_SIZE];
  snprintf(detail, sizeof detail, "%s", t->s->errbuf[0] != '\0' ? t->s->errbuf : curl_easy_strerror(rc));
  tidy_curl_text(detail);
  wxm_buf_reset(&t->s->body);
  if (t->aborted == WXM_ABORT_ERROR) {
    lua_pushvalue(L, t->raised);
    return lua_error(L);
  }
  if (t->fail_kind != NULL) return wxm_fail(L, t->fail_kind, "%s", t->fail_msg);
  if (t->blocked[0] != '\0' && (rc == CURLE_COULDNT_CONNECT || rc == CURLE_ABORTED_BY_CALLBACK))
    return push_blocked(L, t);
  if (t->aborted == WXM_ABORT_FALSE)
    return wxm_fail(L, "aborted", "the transfer was stopped by the progress function");
  if (rc == CURLE_WRITE_ERROR && t->over_cap)
    return wxm_fail(L, "transfer", "the answer (HTTP %ld) was over the cap of %lu bytes for a body kept in memory",
                    wxm_status(t), (unsigned long)t->max_body);
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
