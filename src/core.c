/*
** core.c: luaopen_wxmedia_core, the module's only exported symbol.
** wxmedia.core owns bytes, sockets and files; WeChat policy (tokens, retries, media rules) is Lua's.
*/
#include <pthread.h>

#include "common.h"

#if defined(__GNUC__)
#define WXMEDIA_API __attribute__((visibility("default")))
#else
#define WXMEDIA_API
#endif

/*
** curl_global_init is not thread-safe before libcurl 7.84, and OpenResty may load this module in
** several Lua states on several threads: run it once per process. Never cleaned up, on purpose:
** another state may still be using libcurl when one is closed.
*/
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init (void) {
  global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

#ifdef WXMEDIA_NEED_51_SHIMS
void wxm_setfuncs (lua_State *L, const luaL_Reg *l, int nup) {
  luaL_checkstack(L, nup + 1, "too many upvalues");
  for (; l->name != NULL; l++) {
    int i;
    for (i = 0; i < nup; i++) lua_pushvalue(L, -nup);
    lua_pushcclosure(L, l->func, nup);
    lua_setfield(L, -(nup + 2), l->name);
  }
  lua_pop(L, nup);
}

void wxm_setmetatable (lua_State *L, const char *tname) {
  luaL_getmetatable(L, tname);
  lua_setmetatable(L, -2);
}
#endif

WXMEDIA_API int luaopen_wxmedia_core (lua_State *L);

WXMEDIA_API int luaopen_wxmedia_core (lua_State *L) {
  if (pthread_once(&global_once, global_init) != 0 || global_rc != CURLE_OK)
    return luaL_error(L, "wxmedia.core: curl_global_init failed");
  lua_newtable(L);
  lua_pushliteral(L, WXMEDIA_VERSION);
  lua_setfield(L, -2, "_VERSION");
  lua_pushstring(L, curl_version());
  lua_setfield(L, -2, "curl_version");
  wxm_transfer_open(L);
  wxm_session_open(L);
  wxm_multi_open(L);
  wxm_fs_open(L);
  wxm_digest_open(L);
  wxm_clock_open(L);
  wxm_lock_open(L);
  wxm_temp_open_lib(L);
  return 1;
}
