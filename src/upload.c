/*
** upload.c: s:upload, POST {base_url}/cgi-bin/media/upload?access_token=…&type=… as
** multipart/form-data with one part "media". libcurl's MIME API streams the part from the file
** (curl_mime_filedata), so a 10 MB video never sits in memory.
*/
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

/* A readable regular file, checked before any network traffic: else nil, message, "input". */
static int check_input (lua_State *L, const char *path) {
  struct stat st;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return wxm_fail(L, "input", "cannot open %s: %s", path, WXM_STRERROR(errno));
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return wxm_fail(L, "input", "cannot stat %s: %s", path, WXM_STRERROR(e));
  }
  close(fd);
  if (S_ISDIR(st.st_mode)) return wxm_fail(L, "input", "%s is a directory", path);
  if (!S_ISREG(st.st_mode)) return wxm_fail(L, "input", "%s is not a regular file", path);
  return 0;
}

static const char *string_field (lua_State *L, int opts, const char *key, const char *def) {
  if (opts != 0 && wxm_field(L, opts, key, LUA_TSTRING)) return lua_tostring(L, -1);  /* stays */
  if (opts != 0) lua_pop(L, 1);
  return def;
}

/* s:upload(access_token, type, path [, opts]) */
int wxm_s_upload (lua_State *L) {
  wxm_session *s = wxm_check_session(L);
  size_t typelen;
  const char *token = luaL_checkstring(L, 2);
  const char *type = luaL_checklstring(L, 3, &typelen);
  const char *path = luaL_checkstring(L, 4);
  int opts = wxm_table_arg(L, 5), failed;
  const char *slash = strrchr(path, '/');
  const char *filename = string_field(L, opts, "filename", slash ? slash + 1 : path);
  const char *ctype = string_field(L, opts, "content_type", "application/octet-stream");
  curl_mimepart *part;
  CURLcode rc;
  wxm_transfer t;

  wxm_transfer_init(&t, L, s);
  wxm_transfer_options(L, &t, opts, 1);
  if ((failed = check_input(L, path)) != 0) return failed;
  t.upload_path = path;

  wxm_buf_reset(&s->body);
  if (!wxm_url_join(&s->body, s->base_url, "/cgi-bin/media/upload")
      || !wxm_url_param(&s->body, s->curl, "access_token", token, strlen(token))
      || !wxm_url_param(&s->body, s->curl, "type", type, typelen)
      || !wxm_url_terminate(&s->body))
    return luaL_error(L, "not enough memory");
  rc = curl_easy_setopt(s->curl, CURLOPT_URL, s->body.data);

  /* the session owns the form until wxm_transfer_end, so a failure here cannot leak it */
  if (rc == CURLE_OK && (s->mime = curl_mime_init(s->curl)) == NULL) rc = CURLE_OUT_OF_MEMORY;
  if (rc == CURLE_OK && (part = curl_mime_addpart(s->mime)) != NULL) {
    rc = curl_mime_name(part, "media");
    if (rc == CURLE_OK) rc = curl_mime_filedata(part, path);
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
  if (rc == CURLE_OK) rc = wxm_perform(L, &t);
  curl_easy_setopt(s->curl, CURLOPT_BUFFERSIZE, WXMEDIA_RECV_BUFFER);
  wxm_transfer_end(&t);
  if (rc != CURLE_OK) return wxm_push_failure(L, &t, rc);
  return wxm_push_body_result(L, &t);
}
