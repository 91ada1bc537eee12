/*
** download.c: s:get (media/get) and s:fetch (any URL, e.g. a video's CDN url).
** "File or JSON" is decided from the response before a byte is written: only a 200 whose body is
** not empty, blank or an error document is the file (response.c); anything else comes back in
** memory as { status, content_type, body }. Where the file goes depends on what the destination
** is, looked at with lstat before any request:
**   - nothing yet, or a regular file: a temp file beside it (temp.c), renamed over it only when
**     complete; a failure removes the temp file and leaves the destination exactly as it was;
**   - a symlink to a regular file: the same beside the link's target, which is replaced (the
**     link stays a link);
**   - a FIFO or a character device (/dev/null, a named pipe, a terminal): written in place, as
**     `curl -o` does, with no temp file;
**   - a directory, a socket, a block device, a dangling symlink: refused (input), nothing touched.
** no_replace never replaces an existing regular file (checked before the request, and again by
** the final link or rename, which fails rather than replace); a FIFO or device is still written.
*/
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

/* From the status and headers alone: the body is kept in memory, or sniffed (a file, maybe). */
static void decide (wxm_transfer *t) {
  t->mode = wxm_decide(wxm_status(t), wxm_content_type(t), t->media_get, t->has_cd);
}

/* {====== the destination ====== */

/* A new file's folder is a folder: a typo in it fails before the download, not after. */
static int folder_exists (wxm_transfer *t, const char *path) {
  const char *slash = strrchr(path, '/');
  struct stat st;
  char *dir;
  int e = 0;
  if (slash == NULL || slash == path) return 1;          /* the current folder, or / */
  if ((dir = (char *)malloc((size_t)(slash - path) + 1)) == NULL) return 1;   /* the temp file will tell */
  memcpy(dir, path, (size_t)(slash - path));
  dir[slash - path] = '\0';
  if (stat(dir, &st) != 0) e = errno;
  else if (!S_ISDIR(st.st_mode)) e = ENOTDIR;
  free(dir);
  if (e == 0) return 1;
  wxm_defer(t, "io", "cannot write %s: %s", path, WXM_STRERROR(e));
  return 0;
}

/*
** Sets where the file goes for the destination `path` (which stays alive during the call), by the
** rules above; 0 with a deferred failure when it cannot go there. Runs before the request, and
** again from the write callback when on_file names another path.
*/
static int destination (wxm_transfer *t, const char *path) {
  struct stat st;
  free(t->target);
  t->target = NULL;
  t->in_place = 0;
  t->replace_mode = -1;
  t->path = path;
  if (path[0] == '\0') {
    wxm_defer(t, "input", "the destination path is empty");
    return 0;
  }
  if (lstat(path, &st) != 0) {
    if (errno == ENOENT) return folder_exists(t, path);     /* a new file */
    wxm_defer(t, "io", "cannot write %s: %s", path, WXM_STRERROR(errno));
    return 0;
  }
  if (S_ISLNK(st.st_mode)) {
    if (stat(path, &st) != 0) {
      if (errno == ENOENT) wxm_defer(t, "input", "%s is a symbolic link to nothing", path);
      else wxm_defer(t, "input", "cannot follow the symbolic link %s: %s", path, WXM_STRERROR(errno));
      return 0;
    }
    if (S_ISREG(st.st_mode) && (t->target = realpath(path, NULL)) == NULL) {
      wxm_defer(t, "io", "cannot follow the symbolic link %s: %s", path, WXM_STRERROR(errno));
      return 0;
    }
  }
  if (S_ISREG(st.st_mode)) {
    if (t->no_replace) {
      wxm_defer(t, "input", "%s already exists", path);
      return 0;
    }
    t->replace_mode = (int)(st.st_mode & 0777);       /* never setuid, setgid or sticky */
    return 1;
  }
  if (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode)) {
    t->in_place = 1;
    return 1;
  }
  wxm_defer(t, "input", "%s is %s", path, wxm_what_it_is(st.st_mode));
  return 0;
}

/*
** A FIFO or device, opened when the body is known to be the file. Without blocking: a FIFO that no
** process reads is an error, not a hang. And it must still be one: a path swapped meanwhile for
** a regular file (or a link to one) is not written into in place.
*/
static int open_in_place (wxm_transfer *t) {
  struct stat st;
  int fd = open(t->path, O_WRONLY | O_NOCTTY | O_CLOEXEC | O_NONBLOCK), flags;
  if (fd < 0) {
    if (errno == ENXIO) wxm_defer(t, "io", "cannot write %s: no process is reading that FIFO", t->path);
    else wxm_defer(t, "io", "cannot write %s: %s", t->path, WXM_STRERROR(errno));
    return 0;
  }
  if (fstat(fd, &st) != 0 || !(S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) {
    close(fd);
    wxm_defer(t, "input", "%s changed: it is no longer a FIFO or a device", t->path);
    return 0;
  }
  if ((flags = fcntl(fd, F_GETFL)) >= 0) (void)fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  t->fd = fd;
  return 1;
}

/* A new file gets 0666 less the umask; a replaced one keeps its permission bits. */
static int open_output (wxm_transfer *t) {
  int e;
  if (t->in_place) return open_in_place(t);
  e = wxm_temp_open(&t->tmp, t->target ? t->target : t->path, 0666);
  if (e != 0) {
    wxm_defer(t, "io", "cannot write %s: %s", t->path, WXM_STRERROR(e));
    return 0;
  }
  if (t->replace_mode >= 0 && fchmod(t->tmp.fd, (mode_t)t->replace_mode) != 0) {
    wxm_defer(t, "io", "cannot write %s: %s", t->path, WXM_STRERROR(errno));
    return 0;
  }
  t->fd = t->tmp.fd;
  return 1;
}

/* }====== */

/* {====== on_file ====== */

/* Under lua_pcall: on_file(info), info built here too, so that no allocation error escapes. */
static int on_file_call (lua_State *L) {
  wxm_transfer *t = (wxm_transfer *)lua_touserdata(L, 2);
  const char *ct = wxm_content_type(t);
  char name[WXM_CD_MAX];
  curl_off_t cl = -1;
  lua_settop(L, 1);
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, (lua_Integer)wxm_status(t));
  lua_setfield(L, -2, "status");
  if (ct != NULL) {
    lua_pushstring(L, ct);
    lua_setfield(L, -2, "content_type");
  }
  if (t->has_cd && wxm_parse_filename(t->cd, name, sizeof name) && name[0] != '\0') {
    lua_pushstring(L, name);
    lua_setfield(L, -2, "filename");
  }
  curl_easy_getinfo(t->s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
  if (cl >= 0) {
    wxm_pushsize(L, cl);
    lua_setfield(L, -2, "size");
  }
  lua_call(L, 1, 2);
  return 2;
}

/*
** Asks on_file, before anything is written: a string is the path to use instead; nil (or false)
** and a message stop the transfer with that message (input); anything else keeps the path.
*/
static int ask_on_file (wxm_transfer *t) {
  lua_State *L = t->L;
  lua_pushcfunction(L, on_file_call);
  lua_pushvalue(L, t->on_file);
  lua_pushlightuserdata(L, (void *)t);
  if (!wxm_call(t, 2, 2)) return 0;
  if (lua_type(L, -2) == LUA_TSTRING) {
    size_t len;
    const char *path = lua_tolstring(L, -2, &len);
    lua_pushvalue(L, -2);
    lua_replace(L, t->keep);            /* alive until the call returns */
    lua_pop(L, 2);
    if (WXM_HAS_NUL(path, len)) {
      wxm_defer(t, "input", "the path on_file returned holds a NUL byte");
      return 0;
    }
    return destination(t, path);
  }
  if (!lua_toboolean(L, -2) && lua_type(L, -1) == LUA_TSTRING) {
    wxm_defer(t, "input", "%s", lua_tostring(L, -1));
    lua_pop(L, 2);
    return 0;
  }
  if (lua_type(L, -2) == LUA_TBOOLEAN && !lua_toboolean(L, -2)) {
    wxm_defer(t, "input", "the on_file function refused the file");
    lua_pop(L, 2);
    return 0;
  }
  lua_pop(L, 2);
  return 1;
}

/* }====== */

/* {====== the body ====== */

static int write_all (wxm_transfer *t, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(t->fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      wxm_defer(t, "io", "cannot write %s: %s", t->path, WXM_STRERROR(errno));
      return 0;
    }
    p += w;
    n -= (size_t)w;
    t->written += (curl_off_t)w;
  }
  return 1;
}

/* The body is the file: on_file is asked, the output opened, and the sniffed bytes go first. */
static int become_file (wxm_transfer *t) {
  wxm_buf *b = &t->s->body;
  if (t->on_file != 0 && !ask_on_file(t)) return 0;
  if (!open_output(t)) return 0;
  t->mode = WXM_FILE;
  if (!write_all(t, b->data ? b->data : "", b->len)) return 0;
  wxm_buf_reset(b);
  return 1;
}

/* The first bytes are held in memory until one that is not a BOM or a blank tells (response.c). */
static size_t sniff (wxm_transfer *t, const char *p, size_t n) {
  wxm_buf *b = &t->s->body;
  size_t from = b->len;
  curl_off_t cl = -1;
  if (!wxm_buf_add(b, p, n)) {
    wxm_defer(t, "io", "not enough memory for the answer's body");
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

/* }====== */

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

static int fail_end (lua_State *L, wxm_transfer *t) {
  wxm_transfer_end(t);
  return wxm_push_failure(L, t, CURLE_OK);
}

/* Completes a file: length checked; a temp file flushed, closed and renamed over the destination. */
static int commit_file (lua_State *L, wxm_transfer *t) {
  curl_off_t cl = -1;
  const char *ct = wxm_content_type(t);
  int e;
  curl_easy_getinfo(t->s->curl, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &cl);
  if (cl >= 0 && t->written != cl) {
    wxm_defer(t, "transfer", "the answer was cut short: got %lld of %lld bytes", (long long)t->written,
              (long long)cl);
    return fail_end(L, t);
  }
  if (t->in_place) {
    e = close(t->fd) != 0 ? errno : 0;
    t->fd = -1;
    if (e != 0) wxm_defer(t, "io", "cannot write %s: %s", t->path, WXM_STRERROR(e));
  }
  else {
    /* flushed before the rename, so a crash cannot leave an empty file under the destination's
       name (costs a disk write; a session made with fsync = false skips it, as curl does) */
    e = wxm_temp_close(&t->tmp, t->s->fsync);
    t->fd = -1;
    if (e != 0) wxm_defer(t, "io", "cannot write %s: %s", t->path, WXM_STRERROR(e));
    else if ((e = wxm_temp_rename(&t->tmp, t->target ? t->target : t->path, t->no_replace)) != 0) {
      if (e == EEXIST && t->no_replace) wxm_defer(t, "input", "%s already exists", t->path);
      else wxm_defer(t, "io", "cannot replace %s: %s", t->path, WXM_STRERROR(e));
    }
  }
  if (t->fail_kind != NULL) return fail_end(L, t);
  wxm_transfer_end(t);
  return push_file_result(L, t, ct);
}

/* The outcome of a performed get or fetch: the file result, the body result, or the failure. */
int wxm_download_finish (lua_State *L, wxm_transfer *t, CURLcode rc) {
  if (rc != CURLE_OK || t->aborted != WXM_NOT_ABORTED) {
    wxm_transfer_end(t);
    return wxm_push_failure(L, t, rc);
  }
  if (t->mode == WXM_UNDECIDED) decide(t);    /* no body at all */
  if (t->mode == WXM_SNIFF) t->mode = WXM_BODY;     /* empty, blank or a BOM: not a file */
  if (t->mode == WXM_FILE) return commit_file(L, t);
  wxm_transfer_end(t);
  return wxm_push_body_result(L, t);
}

/* no_replace and on_file, the options of get and fetch; on_file stays on the stack. */
static void download_options (lua_State *L, wxm_transfer *t, int opts) {
  if (opts == 0) return;
  t->no_replace = wxm_flag(L, opts, "no_replace");
  if (wxm_field(L, opts, "on_file", LUA_TFUNCTION)) t->on_file = lua_gettop(L);
  else lua_pop(L, 1);
}

/* Shared by get and fetch: the URL is in s->body (scratch). Nothing is requested for a bad path. */
static int download_prepare (lua_State *L, wxm_transfer *t, const char *path) {
  wxm_session *s = t->s;
  CURLcode rc;
  if (!destination(t, path)) return fail_end(L, t);
  t->mode = WXM_UNDECIDED;
  t->write = download_write;
  rc = curl_easy_setopt(s->curl, CURLOPT_URL, s->body.data);
  if (rc == CURLE_OK) rc = curl_easy_setopt(s->curl, CURLOPT_HTTPGET, 1L);
  if (rc != CURLE_OK) {
    wxm_transfer_end(t);
    return wxm_push_failure(L, t, rc);
  }
  return 0;
}

/* s:get(access_token, media_id, path [, opts]) */
int wxm_s_get (lua_State *L) {
  wxm_session *s = wxm_check_session(L);
  wxm_transfer t;
  int failed = wxm_get_prepare(L, s, &t);
  if (failed != 0) return failed;
  return wxm_download_finish(L, &t, wxm_perform(L, &t));
}

int wxm_get_prepare (lua_State *L, wxm_session *s, wxm_transfer *t) {
  size_t tokenlen, idlen, pathlen;
  const char *token = luaL_checklstring(L, 2, &tokenlen);
  const char *media_id = luaL_checklstring(L, 3, &idlen);
  const char *path = luaL_checklstring(L, 4, &pathlen);
  int opts = wxm_table_arg(L, 5), jssdk = wxm_flag(L, opts, "jssdk");
  wxm_transfer_init(t, L, s);
  download_options(L, t, opts);
  wxm_transfer_options(L, t, opts, 1);
  if (WXM_HAS_NUL(token, tokenlen)) return wxm_fail(L, "input", "the access_token holds a NUL byte");
  if (WXM_HAS_NUL(media_id, idlen)) return wxm_fail(L, "input", "the media_id holds a NUL byte");
  if (WXM_HAS_NUL(path, pathlen)) return wxm_fail(L, "input", "the destination path holds a NUL byte");
  t->media_get = 1;
  /* the URL is built in the session's buffer, so nothing leaks if Lua raises */
  wxm_buf_reset(&s->body);
  if (!wxm_url_join(&s->body, s->base_url, jssdk ? "/cgi-bin/media/get/jssdk" : "/cgi-bin/media/get")
      || !wxm_url_param(&s->body, s->curl, "access_token", token, tokenlen)
      || !wxm_url_param(&s->body, s->curl, "media_id", media_id, idlen)
      || !wxm_url_terminate(&s->body))
    return luaL_error(L, "not enough memory");
  return download_prepare(L, t, path);
}

/* s:fetch(url, path [, opts]): opts.allow_private lets it reach a private address */
int wxm_s_fetch (lua_State *L) {
  wxm_session *s = wxm_check_session(L);
  wxm_transfer t;
  int failed = wxm_fetch_prepare(L, s, &t);
  if (failed != 0) return failed;
  return wxm_download_finish(L, &t, wxm_perform(L, &t));
}

int wxm_fetch_prepare (lua_State *L, wxm_session *s, wxm_transfer *t) {
  size_t urllen, pathlen;
  const char *url = luaL_checklstring(L, 2, &urllen);
  const char *path = luaL_checklstring(L, 3, &pathlen);
  int opts = wxm_table_arg(L, 4), allow_private = wxm_flag(L, opts, "allow_private");
  wxm_transfer_init(t, L, s);
  download_options(L, t, opts);
  wxm_transfer_options(L, t, opts, 1);
  if (WXM_HAS_NUL(url, urllen)) return wxm_fail(L, "input", "the URL holds a NUL byte");
  if (WXM_HAS_NUL(path, pathlen)) return wxm_fail(L, "input", "the destination path holds a NUL byte");
  t->follow = 1;       /* a CDN may redirect */
  t->block_private = !allow_private;
  wxm_buf_reset(&s->body);
  /* used as given: an absolute URL, never joined to base_url */
  if (!wxm_buf_add(&s->body, url, urllen) || !wxm_url_terminate(&s->body))
    return luaL_error(L, "not enough memory");
  return download_prepare(L, t, path);
}
