/*
** compat.h: the few 5.2-5.4 API functions the core uses, for Lua 5.1 and LuaJIT 2.1.
** The code is written against the 5.4 API; each shim is guarded on its own, because LuaJIT 2.1
** already has some 5.2 functions (luaL_setfuncs, luaL_testudata, luaL_setmetatable, LUA_OK).
*/
#ifndef WXMEDIA_COMPAT_H
#define WXMEDIA_COMPAT_H

#include "lua.h"
#include "lauxlib.h"

#ifndef LUA_OK
#define LUA_OK 0
#endif

/* Plain 5.1 lacks these; LuaJIT 2.1 defines luaL_newlibtable alongside them. */
#if LUA_VERSION_NUM == 501 && !defined(luaL_newlibtable)
#define WXMEDIA_NEED_51_SHIMS 1
void wxm_setfuncs (lua_State *L, const luaL_Reg *l, int nup);
void wxm_setmetatable (lua_State *L, const char *tname);
#define luaL_setfuncs(L, l, n)      wxm_setfuncs(L, l, n)
#define luaL_setmetatable(L, tname) wxm_setmetatable(L, tname)
#endif

#ifndef luaL_newlibtable
#define luaL_newlibtable(L, l) lua_createtable(L, 0, (int)(sizeof(l) / sizeof((l)[0]) - 1))
#endif
#ifndef luaL_newlib
#define luaL_newlib(L, l) (luaL_newlibtable(L, l), luaL_setfuncs(L, l, 0))
#endif

#if LUA_VERSION_NUM < 504
#define lua_newuserdatauv(L, size, nuv) lua_newuserdata(L, size)
#endif

#ifndef luaL_pushfail
#define luaL_pushfail(L) lua_pushnil(L)
#endif

/* 64-bit sizes: an integer where lua_Integer holds 64 bits (5.3+, and 5.1 on LP64), else a float. */
#define wxm_pushsize(L, n) \
  ((sizeof(lua_Integer) >= 8) ? lua_pushinteger(L, (lua_Integer)(n)) : lua_pushnumber(L, (lua_Number)(n)))

#endif
