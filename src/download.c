/*
** download.c: s:get (media/get) and s:fetch (any URL, e.g. a video's CDN url).
** "File or JSON" is decided from the response before a byte is written. A file streams into a temp
** file beside the destination and is renamed over it only when complete; on any failure the temp
** file is removed and the destination is left exactly as it was. WeChat's error JSON is never saved.
*/
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define TEMP_SUFFIX ".wxmedia-XXXXXX"
#define TEMP_BASE_MAX 200          /* keeps ".<base>.wxmedia-XXXXXX" under NAME_MAX */

/* From the status and headers alone: the body is kept in memory, a file, or (media/get) sniffed. */
static void decide (wxm_transfer *t) {
  t->mode = wxm_decide(wxm_status(t), wxm_content_type(t), t->media_get, t->has_cd);
}

/* {====== the temp file ====== */

/* The mode the destination will have: its own if it exists, else rw-r--r--. */
static mode_t destination_mode (const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) return st.st_mode & 07777;
  return 0644;
}

/* "<dir>/.<base>.wxmedia-XXXXXX", in the destination's folder so that rename() is atomic. */
static int open_temp (wxm_transfer *t) {
  const char *slash = strrchr(t->path, '/');
  size_t dirlen = slash ? (size_t)(slash - t->path) + 1 : 0;
  const char *base = t->path + dirlen;
  size_t baselen = strlen(base);
  char *tmp;
  if (baselen > TEMP_BASE_MAX) baselen = TEMP_BASE_MAX;
  tmp = (char *)malloc(dirlen + 1 + baselen + sizeof TEMP_SUFFIX);
  if (tmp == NULL) {
    t->io_errno = ENOMEM;
    return 0;
  }
  memcpy(tmp, t->path, dirlen);
  tmp[dirlen] = '.';
  memcpy(tmp + dirlen + 1, base, baselen);
  memcpy(tmp + dirlen + 1 + baselen, TEMP_SUFFIX, sizeof TEMP_SUFFIX);
  t->fd = mkstemp(tmp);
  if (t->fd < 0) {
    t->io_errno = errno;
    free(tmp);
    return 0;
  }
  t->tmp_path = tmp;
  (void)fcntl(t->fd, F_SETFD, FD_CLOEXEC);
  (void)fchmod(t->fd, destination_mode(t->path));
  return 1;
}

static int write_all (wxm_transfer *t, const char *p, size_t n) {
  if (t->fd < 0 && !open_temp(t)) return 0;
  while (n > 0) {
    ssize_t w = write(t->fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      t->io_errno = errno;
      return 0;
    }
    p += w;
    n -= (size_t)w;
    t->written += (curl_off_t)w;
  }
  return 1;
}

/* The sniffed bytes go first into the file. */
static int become_file (wxm_transfer *t) {
  wxm_buf *b = &t->s->body;
  t->mode = WXM_FILE;
  if (!write_all(t, b->data ? b->data : "", b->len)) return 0;
  wxm_buf_reset(b);
  return 1;
}

/* }====== */

/*
** media/get with a Content-Disposition and a binary type still is JSON if its body starts with '{'
** and is small: hold the first bytes in memory until the first non-blank one tells.
*/
static size_t sniff (wxm_transfer *t, const char *p, size_t n) {
  wxm_buf *b = &t->s->body;
  size_t from = b->len;
  curl_off_t cl = -1;
  if (!wxm_buf_add(b, p, n)) {
    t->io_errno = ENOMEM;
    return 0;
  }
  curl_easy_getinfo(t->s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
  switch (wxm_sniff_body(b->data, b->len, from, (long long)cl, t->max_body)) {
    case WXM_SNIFF_MORE: return n;
    case WXM_SNIFF_JSON:
      t->mode = WXM_BODY;
      return n;
    case WXM_SNIFF_OVER_CAP:
      t->mode = WXM_BODY;
      t->over_cap = 1;
      return 0;
    default: return become_file(t) ? n : 0;
  }
}

static size_t download_write (wxm_transfer *t, const char *p, size_t n) {
  if (t->mode == WXM_UNDECIDED) decide(t);
  switch (t->mode) {
    case WXM_SNIFF: return sniff(t, p, n);
    case WXM_FILE: return write_all(t, p, n) ? n : 0;
    default: return wxm_body_add(t, p, n) ? n : 0;
  }
}

static int push_file_result (lua_State *L, wxm_transfer *t, const char *ct) {
  char name[sizeof t->cd];
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, (lua_Integer)wxm_status(t));
  lua_setfield(L, -2, "status");
  if (ct != NULL) {
    lua_pushstring(L, ct);
    lua_setfield(L, -2, "content_type");
  }
  wxm_pushsize(L, t->written);
  lua_setfield(L, -2, "size");
  if (t->has_cd && wxm_parse_filename(t->cd, name, sizeof name) && name[0] != '\0') {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "filename");
  }
  lua_pushstring(L, t->path);
  lua_setfield(L, -2, "path");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "file");
  return 1;
}

/* Completes a file: length checked, flushed to disk, closed, renamed over the destination. */
static int commit_file (lua_State *L, wxm_transfer *t) {
  curl_off_t cl = -1;
  const char *ct = wxm_content_type(t);
  curl_easy_getinfo(t->s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
  if (t->fd < 0 && !open_temp(t)) {           /* an empty file: nothing was written yet */
    wxm_transfer_end(t);
    return wxm_fail(L, "io", "cannot create a temp file beside %s: %s", t->path, WXM_STRERROR(t->io_errno));
  }
  if (cl >= 0 && t->written != cl) {
    wxm_transfer_end(t);
    return wxm_fail(L, "transfer", "truncated: got %lld of %lld bytes", (long long)t->written, (long long)cl);
  }
  /* flushed before the rename, so a crash cannot leave an empty file under the destination's name
     (costs a disk write; a session made with fsync = false skips it, as the curl command does) */
  if ((t->s->fsync && fsync(t->fd) != 0) || close(t->fd) != 0) {
    int e = errno;
    t->fd = -1;
    wxm_transfer_end(t);
    return wxm_fail(L, "io", "cannot write %s: %s", t->path, WXM_STRERROR(e));
  }
  t->fd = -1;
  if (rename(t->tmp_path, t->path) != 0) {
    int e = errno;
    wxm_transfer_end(t);
    return wxm_fail(L, "io", "cannot rename the temp file to %s: %s", t->path, WXM_STRERROR(e));
  }
  free(t->tmp_path);
  t->tmp_path = NULL;
  wxm_transfer_end(t);
  return push_file_result(L, t, ct);
}

static int finish (lua_State *L, wxm_transfer *t, CURLcode rc) {
  if (rc != CURLE_OK) {
    wxm_transfer_end(t);
    if (rc == CURLE_WRITE_ERROR && t->io_errno != 0 && t->io_errno != ENOMEM)
      return wxm_fail(L, "io", "cannot write a temp file beside %s: %s", t->path, WXM_STRERROR(t->io_errno));
    return wxm_push_failure(L, t, rc);
  }
  if (t->mode == WXM_UNDECIDED) decide(t);    /* no body at all */
  if (t->mode == WXM_SNIFF && !become_file(t)) {    /* an empty or blank body with file headers */
    wxm_transfer_end(t);
    return wxm_fail(L, "io", "cannot write a temp file beside %s: %s", t->path, WXM_STRERROR(t->io_errno));
  }
  if (t->mode == WXM_FILE) return commit_file(L, t);
  wxm_transfer_end(t);
  return wxm_push_body_result(L, t);
}

/* Shared by get and fetch: the URL is in s->body (scratch), the options at `opts`. */
static int download (lua_State *L, wxm_transfer *t, const char *path) {
  wxm_session *s = t->s;
  struct stat st;
  CURLcode rc;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
    wxm_buf_reset(&s->body);
    return wxm_fail(L, "io", "%s is a directory", path);
  }
  t->path = path;
  t->mode = WXM_UNDECIDED;
  t->write = download_write;
  rc = curl_easy_setopt(s->curl, CURLOPT_URL, s->body.data);
  if (rc == CURLE_OK) rc = curl_easy_setopt(s->curl, CURLOPT_HTTPGET, 1L);
  if (rc == CURLE_OK) rc = wxm_perform(L, t);
  return finish(L, t, rc);
}

/* s:get(access_token, media_id, path [, opts]) */
int wxm_s_get (lua_State *L) {
  wxm_session *s = wxm_check_session(L);
  size_t idlen;
  const char *token = luaL_checkstring(L, 2);
  const char *media_id = luaL_checklstring(L, 3, &idlen);
  const char *path = luaL_checkstring(L, 4);
  int opts = wxm_table_arg(L, 5), jssdk = 0;
  wxm_transfer t;
  wxm_transfer_init(&t, L, s);
  if (opts != 0) {
    jssdk = wxm_field(L, opts, "jssdk", LUA_TBOOLEAN) && lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  wxm_transfer_options(L, &t, opts, 1);
  t.media_get = 1;
  /* the URL is built in the session's buffer, so nothing leaks if Lua raises later */
  wxm_buf_reset(&s->body);
  if (!wxm_url_join(&s->body, s->base_url, jssdk ? "/cgi-bin/media/get/jssdk" : "/cgi-bin/media/get")
      || !wxm_url_param(&s->body, s->curl, "access_token", token, strlen(token))
      || !wxm_url_param(&s->body, s->curl, "media_id", media_id, idlen)
      || !wxm_url_terminate(&s->body))
    return luaL_error(L, "not enough memory");
  return download(L, &t, path);
}

/* s:fetch(url, path [, opts]) */
int wxm_s_fetch (lua_State *L) {
  wxm_session *s = wxm_check_session(L);
  const char *url = luaL_checkstring(L, 2);
  const char *path = luaL_checkstring(L, 3);
  int opts = wxm_table_arg(L, 4);
  wxm_transfer t;
  wxm_transfer_init(&t, L, s);
  wxm_transfer_options(L, &t, opts, 1);
  t.follow = 1;       /* a CDN may redirect */
  wxm_buf_reset(&s->body);
  /* used as given: an absolute URL, never joined to base_url */
  if (!wxm_buf_addstr(&s->body, url) || !wxm_url_terminate(&s->body))
    return luaL_error(L, "not enough memory");
  return download(L, &t, path);
}
