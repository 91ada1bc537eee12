/*
** upload.c: s:upload, POST {base_url}/cgi-bin/media/upload?access_token=…&type=… as
** multipart/form-data with one part "media", streamed from the file so a 10 MB video never sits
** in memory. The file is opened once and the part has the size fstat gave: the request declares
** its length (WeChat answers HTTP 412 to a chunked body) and sends exactly that many bytes. A file
** that ends early or grows meanwhile fails the upload (input): what was checked is what is sent.
** Bytes in memory and a Lua reader are sent the same way, with their size (upload_source.c).
*/
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

/* {====== the part's bytes ====== */

static size_t read_cb (char *buf, size_t size, size_t nitems, void *ud) {
  wxm_transfer *t = (wxm_transfer *)ud;
  size_t want = size * nitems;
  curl_off_t left = t->upload_size - t->upload_pos;
  ssize_t got;
  char extra;
  if (left <= 0) return 0;
  if ((curl_off_t)want > left) want = (size_t)left;
  do got = pread(t->upload_fd, buf, want, (off_t)t->upload_pos); while (got < 0 && errno == EINTR);
  if (got < 0) {
    wxm_defer(t, "input", "cannot read %s: %s", t->upload_path, WXM_STRERROR(errno));
    return CURL_READFUNC_ABORT;
  }
  if (got == 0) {
    wxm_defer(t, "input", "%s changed while it was being uploaded: it ended before its %lld bytes",
              t->upload_path, (long long)t->upload_size);
    return CURL_READFUNC_ABORT;
  }
  t->upload_pos += got;
  /* the last bytes are not handed over when there are more: the server never gets a whole file */
  if (t->upload_pos == t->upload_size
      && pread(t->upload_fd, &extra, 1, (off_t)t->upload_size) == 1) {
    wxm_defer(t, "input", "%s changed while it was being uploaded: it grew past its %lld bytes",
              t->upload_path, (long long)t->upload_size);
    return CURL_READFUNC_ABORT;
  }
  return (size_t)got;
}

/* libcurl rewinds the part when it sends the request again (a reused connection that was closed). */
static int seek_cb (void *ud, curl_off_t offset, int origin) {
  wxm_transfer *t = (wxm_transfer *)ud;
  if (origin != SEEK_SET) return CURL_SEEKFUNC_CANTSEEK;
  if (offset < 0 || offset > t->upload_size) return CURL_SEEKFUNC_FAIL;
  t->upload_pos = offset;
  return CURL_SEEKFUNC_OK;
}

/* }====== */

/*
** Opens the file to send (kept in t until the call ends): a regular file, of the size the caller
** checked when it says one. Else nil, message, "input", before any network traffic.
*/
static int open_input (lua_State *L, wxm_transfer *t, const char *path, lua_Number checked) {
  struct stat st;
  int fd = wxm_open_read(path);
  if (fd < 0) return wxm_fail(L, "input", "cannot open %s: %s", path, WXM_STRERROR(errno));
  t->upload_fd = fd;
  if (fstat(fd, &st) != 0) return wxm_fail(L, "input", "cannot read %s: %s", path, WXM_STRERROR(errno));
  if (!S_ISREG(st.st_mode)) return wxm_fail(L, "input", "%s is %s", path, wxm_what_it_is(st.st_mode));
  if (checked >= 0 && (lua_Number)st.st_size != checked)
    return wxm_fail(L, "input", "%s changed after it was checked: %.0f bytes then, %lld now", path,
                    (double)checked, (long long)st.st_size);
  t->upload_path = path;
  t->upload_size = (curl_off_t)st.st_size;
  return 0;
}

/* An optional string field of opts (it stays on the stack), with its length; def when absent. */
static const char *string_field (lua_State *L, int opts, const char *key, const char *def, size_t *len) {
  if (opts != 0 && wxm_field(L, opts, key, LUA_TSTRING)) return lua_tolstring(L, -1, len);
  if (opts != 0) lua_pop(L, 1);
  *len = def != NULL ? strlen(def) : 0;
  return def;
}

/*
** The URL of an upload with this token and type, in s->upload_url: the last upload's when they are
** the same (uploads in a row send the same token and type: joining and escaping them again cost 2k
** instructions an upload, 1% of it; BENCHMARKS.md). 0 when out of memory.
*/
static int upload_url (wxm_session *s, const char *token, size_t tokenlen, const char *type, size_t typelen) {
  wxm_buf *key = &s->upload_key, *url = &s->upload_url;
  if (url->len > 0 && key->len == tokenlen + 1 + typelen && memcmp(key->data, token, tokenlen) == 0
      && key->data[tokenlen] == '\0' && memcmp(key->data + tokenlen + 1, type, typelen) == 0)
    return 1;
  wxm_buf_reset(key);
  wxm_buf_reset(url);
  if (wxm_buf_add(key, token, tokenlen) && wxm_buf_add(key, "", 1) && wxm_buf_add(key, type, typelen)
      && wxm_url_join(url, s->base_url, "/cgi-bin/media/upload")
      && wxm_url_param(url, s->curl, "access_token", token, tokenlen)
      && wxm_url_param(url, s->curl, "type", type, typelen) && wxm_url_terminate(url))
    return 1;
  url->len = 0;
  return 0;
}

/* s:upload(access_token, type, path [, opts]), or with { data = bytes } or { reader = f, size = N }
   in place of the path and opts.filename given */
int wxm_s_upload (lua_State *L) {
  wxm_session *s = wxm_check_session(L);
  wxm_transfer t;
  int failed = wxm_upload_prepare(L, s, &t);
  if (failed != 0) return failed;
  return wxm_upload_finish(L, &t, wxm_perform(L, &t));
}

/* s:upload's arguments (from index 2) made into the transfer t on s, ready to perform. */
int wxm_upload_prepare (lua_State *L, wxm_session *s, wxm_transfer *t) {
  size_t tokenlen, typelen, pathlen, namelen, ctlen;
  const char *token = luaL_checklstring(L, 2, &tokenlen);
  const char *type = luaL_checklstring(L, 3, &typelen);
  int from_path = lua_type(L, 4) != LUA_TTABLE;
  const char *path = from_path ? luaL_checklstring(L, 4, &pathlen) : NULL;
  int opts = wxm_table_arg(L, 5), failed;
  const char *slash = from_path ? strrchr(path, '/') : NULL;
  const char *filename = string_field(L, opts, "filename", !from_path ? NULL : slash ? slash + 1 : path,
                                      &namelen);
  const char *ctype = string_field(L, opts, "content_type", "application/octet-stream", &ctlen);
  lua_Number checked = -1;
  curl_mimepart *part;
  CURLcode rc;

  if (filename == NULL) luaL_argerror(L, 5, "field 'filename' expected for an upload that is not a file");
  if (opts != 0) {
    if (wxm_field(L, opts, "size", LUA_TNUMBER)) {
      checked = lua_tonumber(L, -1);
      if (!(checked >= 0 && checked <= 9007199254740992.0))
        luaL_argerror(L, opts, "field 'size' out of range");
    }
    lua_pop(L, 1);
  }
  if (strchr(ctype, '\r') != NULL || strchr(ctype, '\n') != NULL)
    luaL_argerror(L, opts, "field 'content_type' must not contain a line break");
  wxm_transfer_init(t, L, s);
  wxm_transfer_options(L, t, opts, 1);
  if (!from_path && (failed = wxm_source_open(L, t, 4, checked)) != 0) return failed;
  if (WXM_HAS_NUL(token, tokenlen)) return wxm_fail(L, "input", "the access_token holds a NUL byte");
  if (WXM_HAS_NUL(type, typelen)) return wxm_fail(L, "input", "the media type holds a NUL byte");
  if (from_path && WXM_HAS_NUL(path, pathlen)) return wxm_fail(L, "input", "the file path holds a NUL byte");
  if (WXM_HAS_NUL(filename, namelen)) return wxm_fail(L, "input", "the filename holds a NUL byte");
  if (WXM_HAS_NUL(ctype, ctlen)) return wxm_fail(L, "input", "the content_type holds a NUL byte");
  if (from_path && (failed = open_input(L, t, path, checked)) != 0) {
    wxm_transfer_end(t);
    return failed;
  }

  if (!upload_url(s, token, tokenlen, type, typelen)) {
    wxm_transfer_end(t);
    return luaL_error(L, "not enough memory");
  }
  rc = curl_easy_setopt(s->curl, CURLOPT_URL, s->upload_url.data);

  /* the session owns the form until wxm_transfer_end, so a failure here cannot leak it */
  if (rc == CURLE_OK && (s->mime = curl_mime_init(s->curl)) == NULL) rc = CURLE_OUT_OF_MEMORY;
  if (rc == CURLE_OK && (part = curl_mime_addpart(s->mime)) != NULL) {
    rc = curl_mime_name(part, "media");
    if (rc == CURLE_OK && from_path)
      rc = curl_mime_data_cb(part, t->upload_size, read_cb, seek_cb, NULL, (void *)t);
    else if (rc == CURLE_OK) rc = wxm_source_attach(part, t);
    if (rc == CURLE_OK) rc = curl_mime_filename(part, filename);
    if (rc == CURLE_OK) rc = curl_mime_type(part, ctype);
  }
  else if (rc == CURLE_OK) rc = CURLE_OUT_OF_MEMORY;
  if (rc == CURLE_OK) rc = curl_easy_setopt(s->curl, CURLOPT_MIMEPOST, s->mime);
  /* The answer is a few hundred bytes of JSON: libcurl's default receive buffer, not the session's
  ** 100 KiB one (set back after). That one, allocated and freed with every transfer, left enough
  ** free at the top of the heap, with the Lua layer's garbage, for glibc to give it back to the
  ** kernel and fault it in again at every upload: uploads in a loop ran at half speed
  ** (BENCHMARKS.md). */
  if (rc == CURLE_OK) rc = curl_easy_setopt(s->curl, CURLOPT_BUFFERSIZE, (long)CURL_MAX_WRITE_SIZE);
  if (rc != CURLE_OK) {
    wxm_transfer_end(t);
    return wxm_push_failure(L, t, rc);
  }
  return 0;
}

/* The upload's outcome: { status, content_type, body }, or nil, message, kind. */
int wxm_upload_finish (lua_State *L, wxm_transfer *t, CURLcode rc) {
  curl_easy_setopt(t->s->curl, CURLOPT_BUFFERSIZE, WXMEDIA_RECV_BUFFER);
  wxm_transfer_end(t);
  if (rc != CURLE_OK || t->aborted != WXM_NOT_ABORTED) return wxm_push_failure(L, t, rc);
  return wxm_push_body_result(L, t);
}
