/*
** multi.c: the wxmedia.multi userdata, many transfers at once on one thread (libcurl's multi
** interface). A multi owns `size` easy handles, each set up as a session's (the same options), and
** one CURLM whose connection pool they share: N uploads at once go out on N connections, which stay
** open for the next ones.
**
** The core moves bytes; the Lua layer decides (lua/wxmedia/many.lua). A multi does not queue,
** retry or refresh tokens: it takes at most `size` transfers, each prepared by the very code of the
** session's method (m:upload, m:get, m:fetch take a session's arguments and make its checks; each
** returns a ticket, or nil, message, kind before any request), and m:wait() runs them until one
** ends, then returns its ticket and exactly what the session's method would have returned. Every
** guarantee of a session's transfer holds: the file sent is the size checked, a download goes to a
** temp file renamed into place only when complete, the Lua callbacks run under lua_pcall and an
** error they raise is raised again by the wait that ends that transfer, after its cleanup.
**
** A transfer outlives the call that prepared it, and its callbacks refer to values on the Lua stack
** (its arguments, option strings, the tick, the slot for a raised error, on_file and the path it
** returned, an upload's bytes in memory or its reader and the reader's last string): that stack
** segment is the transfer's frame. It is kept in a table in the registry, and
** pushed onto the stack of each wait, where the callbacks run; the transfer's stack indexes move with it.
*/
#include <stdlib.h>
#include <string.h>

#include "common.h"

#define WXMEDIA_MULTI "wxmedia.multi"
#define MULTI_MAX 64            /* transfers at once */
#define FRAME_MAX 16            /* values a prepared transfer keeps on the stack (11 at most today) */
#define POLL_MS 100             /* a wait calls Lua at least this often (the interrupt of lua.c) */

typedef int (*prepare_fn) (lua_State *L, wxm_session *s, wxm_transfer *t);
typedef int (*finish_fn) (lua_State *L, wxm_transfer *t, CURLcode rc);

typedef struct slot {
  wxm_session s;                /* the easy handle, its body buffer, form and headers */
  wxm_transfer t;
  int running;
  finish_fn finish;             /* the method's second half: upload's or download's */
  lua_Integer ticket;
  int frame;                    /* registry reference of the frame's table */
  int table;                    /* while a wait runs: the stack index of that table ... */
  int from;                     /* ... and of the frame's first value (t's indexes count from it) */
  int count;                    /* values in the frame */
} slot;

typedef struct wxm_multi {
  CURLM *multi;                 /* NULL once closed */
  slot *slots;
  int size, running;
  int busy;                     /* inside a wait: the transfers' Lua callbacks run */
  lua_Integer tickets;
} wxm_multi;

static wxm_multi *check_multi (lua_State *L) {
  wxm_multi *m = (wxm_multi *)luaL_checkudata(L, 1, WXMEDIA_MULTI);
  if (m->multi == NULL) luaL_error(L, "attempt to use a closed " WXMEDIA_MULTI);
  if (m->busy) luaL_error(L, "attempt to use a busy " WXMEDIA_MULTI " (from a progress function)");
  return m;
}

/* {====== frames ====== */

static void frame_move (slot *sl, int from) {
  int delta = from - sl->from;
  sl->t.tick += delta;
  sl->t.raised += delta;
  sl->t.keep += delta;
  if (sl->t.on_file != 0) sl->t.on_file += delta;
  if (sl->t.source.reader != 0) {          /* an upload from a reader (upload_source.c) */
    sl->t.source.reader += delta;
    sl->t.source.chunk += delta;
  }
  sl->from = from;
}

/* Pushes the frame of every running transfer: its table, then its values. */
static void push_frames (lua_State *L, wxm_multi *m) {
  int i, j;
  for (i = 0; i < m->size; i++) {
    slot *sl = &m->slots[i];
    if (!sl->running) continue;
    luaL_checkstack(L, sl->count + 1, "no room for the transfers' frames");
    lua_rawgeti(L, LUA_REGISTRYINDEX, sl->frame);
    sl->table = lua_gettop(L);
    for (j = 1; j <= sl->count; j++) lua_rawgeti(L, sl->table, j);
    frame_move(sl, sl->table + 1);
    sl->t.L = L;
  }
}

/* The frame's value at stack index idx goes back to its place in the frame's table. */
static void keep_value (lua_State *L, slot *sl, int idx) {
  lua_pushvalue(L, idx);
  lua_rawseti(L, sl->table, idx - sl->from + 1);
}

/*
** What a callback may have changed in a frame goes back to its table: the raised error, the kept
** value (on_file's path) and a reader's last string (libcurl may take the rest of its bytes in a
** later wait: the string must live until then). Into the array part the table was made with:
** nothing is allocated.
*/
static void keep_frames (lua_State *L, wxm_multi *m) {
  int i;
  for (i = 0; i < m->size; i++) {
    slot *sl = &m->slots[i];
    if (!sl->running) continue;
    keep_value(L, sl, sl->t.raised);
    keep_value(L, sl, sl->t.keep);
    if (sl->t.source.reader != 0) keep_value(L, sl, sl->t.source.chunk);
  }
}

/* }====== */

/* The transfer leaves the multi; its C resources are released, its temp file removed. */
static void slot_stop (lua_State *L, wxm_multi *m, slot *sl) {
  curl_multi_remove_handle(m->multi, sl->s.curl);
  sl->running = 0;
  m->running--;
  luaL_unref(L, LUA_REGISTRYINDEX, sl->frame);
  sl->frame = LUA_NOREF;
}

/* m:upload(...), m:get(...), m:fetch(...): a session's arguments; a ticket, or nil, message, kind. */
static int multi_add (lua_State *L, prepare_fn prepare, finish_fn finish) {
  wxm_multi *m = check_multi(L);
  slot *sl = NULL;
  int i, top, failed, frame;
  CURLcode rc;
  for (i = 0; i < m->size && sl == NULL; i++)
    if (!m->slots[i].running) sl = &m->slots[i];
  if (sl == NULL)
    return luaL_error(L, "attempt to add a transfer to a full " WXMEDIA_MULTI " (%d at once)", m->size);
  /* the frame's table first: once the transfer is prepared, nothing may raise before it runs */
  lua_createtable(L, FRAME_MAX, 0);
  frame = luaL_ref(L, LUA_REGISTRYINDEX);
  failed = prepare(L, &sl->s, &sl->t);
  if (failed != 0) {
    luaL_unref(L, LUA_REGISTRYINDEX, frame);
    return failed;
  }
  top = lua_gettop(L);
  if (top - 1 > FRAME_MAX) {             /* cannot happen: the methods keep 9 values at most */
    luaL_unref(L, LUA_REGISTRYINDEX, frame);
    return finish(L, &sl->t, CURLE_FAILED_INIT);
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, frame);
  for (i = 2; i <= top; i++) {
    lua_pushvalue(L, i);
    lua_rawseti(L, -2, i - 1);
  }
  lua_pop(L, 1);
  sl->frame = frame;
  sl->from = 2;
  sl->count = top - 1;
  sl->finish = finish;
  rc = wxm_transfer_attach(&sl->t);
  if (rc == CURLE_OK && curl_multi_add_handle(m->multi, sl->s.curl) != CURLM_OK) rc = CURLE_OUT_OF_MEMORY;
  if (rc != CURLE_OK) {
    luaL_unref(L, LUA_REGISTRYINDEX, frame);
    sl->frame = LUA_NOREF;
    return finish(L, &sl->t, rc);
  }
  sl->running = 1;
  sl->ticket = ++m->tickets;
  m->running++;
  lua_pushinteger(L, sl->ticket);
  return 1;
}

static int multi_upload (lua_State *L) {
  return multi_add(L, wxm_upload_prepare, wxm_upload_finish);
}

static int multi_get (lua_State *L) {
  return multi_add(L, wxm_get_prepare, wxm_download_finish);
}

static int multi_fetch (lua_State *L) {
  return multi_add(L, wxm_fetch_prepare, wxm_download_finish);
}

/* The transfer that ended: its ticket, then what the session's method returns (or its error raised). */
static int report (lua_State *L, wxm_multi *m, slot *sl, CURLcode rc) {
  lua_pushinteger(L, sl->ticket);
  slot_stop(L, m, sl);          /* its frame stays on this stack until the results are made */
  return 1 + sl->finish(L, &sl->t, rc);
}

enum run_end { RUN_DONE, RUN_TIMEOUT, RUN_RAISED, RUN_FAILED };

/*
** Runs until one transfer ends (*done), or `timeout` seconds passed. Between rounds of the
** transfers' own callbacks, calls the no-op tick (as a transfer does, at most every POLL_MS): an
** interrupt raised there (its error on the stack, RUN_RAISED) leaves every transfer in the multi,
** to be cancelled, or waited for again.
*/
static enum run_end run (lua_State *L, wxm_multi *m, double timeout, slot **done, CURLcode *result,
                         CURLMcode *mc) {
  double start = wxm_monotonic();
  for (;;) {
    int still, left, ms = POLL_MS;
    CURLMsg *msg;
    *mc = curl_multi_perform(m->multi, &still);
    while ((msg = curl_multi_info_read(m->multi, &left)) != NULL) {
      if (msg->msg == CURLMSG_DONE) {
        char *sl = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &sl);
        *done = (slot *)(void *)sl;
        *result = msg->data.result;
        return RUN_DONE;
      }
    }
    if (*mc != CURLM_OK) return RUN_FAILED;
    if (timeout >= 0) {
      double rest = timeout - (wxm_monotonic() - start);
      if (rest <= 0) return RUN_TIMEOUT;
      if (rest * 1000 < ms) ms = (int)(rest * 1000) + 1;
    }
#if LIBCURL_VERSION_NUM >= 0x074200
    *mc = curl_multi_poll(m->multi, NULL, 0, ms, NULL);
#else
    *mc = curl_multi_wait(m->multi, NULL, 0, ms, NULL);
#endif
    if (*mc != CURLM_OK) return RUN_FAILED;
    wxm_push_noop(L);
    if (lua_pcall(L, 0, 0, 0) != LUA_OK) return RUN_RAISED;
  }
}

/*
** m:wait([timeout]) -> ticket, <the method's returns> when a transfer ended; nothing when none is
** running, or when timeout (seconds) passed first.
*/
static int multi_wait (lua_State *L) {
  wxm_multi *m = check_multi(L);
  double timeout = (double)luaL_optnumber(L, 2, -1);
  CURLcode rc = CURLE_OK;
  CURLMcode mc = CURLM_OK;
  slot *done = NULL;
  enum run_end end;
  if (m->running == 0) return 0;
  lua_settop(L, 2);
  push_frames(L, m);
  m->busy = 1;
  end = run(L, m, timeout, &done, &rc, &mc);
  m->busy = 0;
  keep_frames(L, m);
  switch (end) {
    case RUN_DONE: return report(L, m, done, rc);
    case RUN_RAISED: return lua_error(L);
    case RUN_FAILED: return luaL_error(L, "the transfers failed: %s", curl_multi_strerror(mc));
    default: return 0;
  }
}

static int multi_running (lua_State *L) {
  wxm_multi *m = (wxm_multi *)luaL_checkudata(L, 1, WXMEDIA_MULTI);
  lua_pushinteger(L, m->running);
  return 1;
}

/* Stops every running transfer: removed from the multi, files closed, temp files removed. */
static void cancel_all (lua_State *L, wxm_multi *m) {
  int i;
  for (i = 0; i < m->size; i++) {
    slot *sl = &m->slots[i];
    if (!sl->running) continue;
    /* libcurl may call back while it drops the transfer: no Lua then (its frame is not on this stack) */
    sl->t.aborted = WXM_ABORT_FALSE;
    curl_easy_setopt(sl->s.curl, CURLOPT_NOPROGRESS, 1L);
    slot_stop(L, m, sl);
    curl_easy_setopt(sl->s.curl, CURLOPT_BUFFERSIZE, WXMEDIA_RECV_BUFFER);
    wxm_transfer_end(&sl->t);
  }
}

/* m:cancel(): the multi stays open (its connections too). */
static int multi_cancel (lua_State *L) {
  cancel_all(L, check_multi(L));
  return 0;
}

static int multi_close (lua_State *L) {
  wxm_multi *m = (wxm_multi *)luaL_checkudata(L, 1, WXMEDIA_MULTI);
  int i;
  if (m->busy) return luaL_error(L, "attempt to close a busy " WXMEDIA_MULTI " (from a progress function)");
  if (m->multi == NULL) return 0;
  cancel_all(L, m);
  curl_multi_cleanup(m->multi);
  m->multi = NULL;
  for (i = 0; i < m->size; i++) wxm_session_release(&m->slots[i].s);
  free(m->slots);
  m->slots = NULL;
  m->size = 0;
  return 0;
}

static int multi_tostring (lua_State *L) {
  wxm_multi *m = (wxm_multi *)luaL_checkudata(L, 1, WXMEDIA_MULTI);
  if (m->multi == NULL) lua_pushliteral(L, WXMEDIA_MULTI " (closed)");
  else lua_pushfstring(L, WXMEDIA_MULTI " (%p)", (void *)m);
  return 1;
}

/* core.multi(n [, opts]): n transfers at once (1 to core.MULTI_MAX); opts: those of core.session. */
static int multi_new (lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  int idx = 0, i;
  wxm_multi *m;
  luaL_argcheck(L, n >= 1 && n <= MULTI_MAX, 1, "1 to 64 transfers at once expected");
  if (!lua_isnoneornil(L, 2)) {
    luaL_checktype(L, 2, LUA_TTABLE);
    idx = 2;
    wxm_session_check_options(L, idx);
  }
  lua_settop(L, 2);
  m = (wxm_multi *)lua_newuserdatauv(L, sizeof *m, 0);
  memset(m, 0, sizeof *m);                    /* closed: m->multi == NULL */
  luaL_setmetatable(L, WXMEDIA_MULTI);
  if ((m->slots = (slot *)calloc((size_t)n, sizeof *m->slots)) == NULL) return luaL_error(L, "not enough memory");
  if ((m->multi = curl_multi_init()) == NULL) {
    free(m->slots);
    m->slots = NULL;
    return luaL_error(L, "curl_multi_init failed");
  }
  m->size = (int)n;
  for (i = 0; i < m->size; i++) m->slots[i].frame = LUA_NOREF;
  for (i = 0; i < m->size; i++) {                /* raises on failure: __gc releases what was made */
    slot *sl = &m->slots[i];
    wxm_session_setup(L, idx, &sl->s);
    if (curl_easy_setopt(sl->s.curl, CURLOPT_PRIVATE, (void *)sl) != CURLE_OK)
      return luaL_error(L, "cannot set session options");
  }
  return 1;
}

static const luaL_Reg methods[] = {
  { "upload", multi_upload },
  { "get", multi_get },
  { "fetch", multi_fetch },
  { "wait", multi_wait },
  { "running", multi_running },
  { "cancel", multi_cancel },
  { "close", multi_close },
  { NULL, NULL }
};

static const luaL_Reg metamethods[] = {
  { "__gc", multi_close },
#if LUA_VERSION_NUM >= 504
  { "__close", multi_close },
#endif
  { "__tostring", multi_tostring },
  { NULL, NULL }
};

static const luaL_Reg functions[] = {
  { "multi", multi_new },
  { NULL, NULL }
};

void wxm_multi_open (lua_State *L) {
  luaL_newmetatable(L, WXMEDIA_MULTI);
  luaL_setfuncs(L, metamethods, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, functions, 0);
  lua_pushinteger(L, MULTI_MAX);
  lua_setfield(L, -2, "MULTI_MAX");
}
