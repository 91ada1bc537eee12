/*
** upload_source.c: what s:upload sends when it is not a file: bytes in memory, or what a Lua reader
** function gives. Either way the part has a size declared before the request (WeChat answers HTTP
** 412 to a chunked body), and exactly that many bytes go out:
**   { data = bytes }             the string itself is read, never copied (curl_mime_data would copy
**                                up to 10 MB at every upload); it stays on the Lua stack meanwhile
**   { reader = f, size = N }     f(n) gives the next bytes: a string (n is what libcurl wants next;
**                                more or fewer are fine, the rest is kept for the next read), nil or
**                                "" at the end, nil and a message on a read error. A reader that
**                                ends before N bytes, or gives more than N, fails the upload (input)
**                                before its last byte is handed to libcurl: the server never gets
**                                a whole body that is not the declared one.
** The reader runs inside libcurl, under lua_pcall: its error is raised again after cleanup, as a
** progress function's is. It must not yield (a coroutine cannot yield across libcurl).
*/
#include <stdio.h>
#include <string.h>

#include "common.h"

#define MAX_SIZE 9007199254740992.0      /* 2^53: what a Lua number holds exactly */

/* {====== reading ====== */

/* Calls the reader for (about) want bytes; 1 when it gave a string, kept as src->rest. */
static int pull (wxm_source *src, size_t want) {
  wxm_transfer *t = src->t;
  lua_State *L = t->L;
  size_t len;
  const char *p;
  lua_pushvalue(L, src->reader);
  lua_pushinteger(L, (lua_Integer)want);
  if (!wxm_call(t, 1, 2)) return 0;
  if (lua_type(L, -2) == LUA_TSTRING) {
    p = lua_tolstring(L, -2, &len);
    if (len > 0) {
      lua_pop(L, 1);
      lua_replace(L, src->chunk);          /* kept alive while its bytes are taken */
      src->rest = p;
      src->rest_len = len;
      return 1;
    }
  }
  else if (lua_isnil(L, -2) && lua_type(L, -1) == LUA_TSTRING) {
    wxm_defer(t, "input", "cannot read from the reader: %s", lua_tostring(L, -1));
    lua_pop(L, 2);
    return 0;
  }
  else if (!lua_isnil(L, -2)) {
    /* a reader that breaks its contract is a bug of the caller's: raised, as a bad argument is */
    lua_pushfstring(L, "bad reader for 'upload' (string or nil expected, got %s)", luaL_typename(L, -2));
    lua_replace(L, t->raised);
    t->aborted = WXM_ABORT_ERROR;
    lua_pop(L, 2);
    return 0;
  }
  lua_pop(L, 2);
  src->rest = NULL;
  src->rest_len = 0;
  return 0;
}

/* After the declared size: the reader must be at its end. */
static int at_end (wxm_source *src) {
  if (pull(src, 1)) {
    wxm_defer(src->t, "input", "the reader gave more than its %lld bytes", (long long)src->size);
    return 0;
  }
  return src->t->fail_kind == NULL && src->t->aborted == WXM_NOT_ABORTED;
}

static size_t read_reader (wxm_source *src, char *buf, size_t want) {
  wxm_transfer *t = src->t;
  curl_off_t left = src->size - src->pos;
  size_t n;
  if (src->rest_len == 0 && !pull(src, want)) {
    if (t->fail_kind == NULL && t->aborted == WXM_NOT_ABORTED)
      wxm_defer(t, "input", "the reader ended after %lld of its %lld bytes", (long long)src->pos,
                (long long)src->size);
    return CURL_READFUNC_ABORT;
  }
  if ((curl_off_t)src->rest_len > left) {
    wxm_defer(t, "input", "the reader gave more than its %lld bytes", (long long)src->size);
    return CURL_READFUNC_ABORT;
  }
  n = src->rest_len < want ? src->rest_len : want;
  memcpy(buf, src->rest, n);
  src->rest += n;
  src->rest_len -= n;
  src->pos += (curl_off_t)n;
  /* the last bytes are not handed over when the reader has more: the server never gets a whole body */
  if (src->pos == src->size && !at_end(src)) return CURL_READFUNC_ABORT;
  return n;
}

static size_t read_cb (char *buf, size_t size, size_t nitems, void *ud) {
  wxm_source *src = (wxm_source *)ud;
  size_t want = size * nitems;
  curl_off_t left = src->size - src->pos;
  if (left <= 0) return 0;
  if ((curl_off_t)want > left) want = (size_t)left;
  if (src->reader != 0) return read_reader(src, buf, want);
  memcpy(buf, src->data + src->pos, want);
  src->pos += (curl_off_t)want;
  return want;
}

/*
** libcurl rewinds the part when it sends the request again (a reused connection that was closed):
** bytes in memory are read again; a reader cannot go back.
*/
static int seek_cb (void *ud, curl_off_t offset, int origin) {
  wxm_source *src = (wxm_source *)ud;
  if (origin != SEEK_SET || offset < 0 || offset > src->size) return CURL_SEEKFUNC_FAIL;
  if (src->reader != 0 && offset != src->pos) {
    wxm_defer(src->t, "transfer", "the request had to be sent again, and a reader cannot be read twice");
    return CURL_SEEKFUNC_CANTSEEK;
  }
  src->pos = offset;
  return CURL_SEEKFUNC_OK;
}

/* }====== */

/*
** Reads the source table at arg into t->source (raising when it is neither form) and keeps on the
** stack what the transfer reads. 0, or nil, message, "input" pushed (returns 3) when its size is not the one the
** caller checked (checked < 0: none).
*/
int wxm_source_open (lua_State *L, wxm_transfer *t, int arg, lua_Number checked) {
  static const char *const forms = "{ data = string } or { reader = function, size = number } expected";
  wxm_source *src = &t->source;
  size_t len;
  memset(src, 0, sizeof *src);
  src->t = t;
  luaL_checktype(L, arg, LUA_TTABLE);
  if (wxm_field(L, arg, "data", LUA_TSTRING)) {          /* kept on the stack for the call */
    src->data = lua_tolstring(L, -1, &len);
    src->size = (curl_off_t)len;
    lua_getfield(L, arg, "reader");
    if (!lua_isnil(L, -1)) luaL_argerror(L, arg, forms);
    lua_pop(L, 1);
  }
  else {
    lua_Number size;
    lua_pop(L, 1);
    if (!wxm_field(L, arg, "reader", LUA_TFUNCTION)) luaL_argerror(L, arg, forms);
    src->reader = lua_gettop(L);
    if (!wxm_field(L, arg, "size", LUA_TNUMBER)) luaL_argerror(L, arg, forms);
    size = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (!(size >= 0 && size <= MAX_SIZE && size == (lua_Number)(curl_off_t)size))
      luaL_argerror(L, arg, "field 'size' out of range");
    src->size = (curl_off_t)size;
    lua_pushnil(L);
    src->chunk = lua_gettop(L);
  }
  if (checked >= 0 && checked != (lua_Number)src->size)
    return wxm_fail(L, "input", "the %s changed after it was checked: %.0f bytes then, %lld now",
                    src->reader ? "reader's size" : "data", (double)checked, (long long)src->size);
  return 0;
}

/* The part's body: t's source, with its size declared. */
CURLcode wxm_source_attach (curl_mimepart *part, wxm_transfer *t) {
  return curl_mime_data_cb(part, t->source.size, read_cb, seek_cb, NULL, (void *)&t->source);
}
