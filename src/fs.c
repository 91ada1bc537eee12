/*
** fs.c: core.stat(path), what the Lua layer needs to know about a file before sending it.
*/
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "common.h"

/* core.stat(path) -> { size = N, mtime = seconds, type = "file"|"directory"|"other" } */
static int core_stat (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (stat(path, &st) != 0) return wxm_fail(L, "input", "cannot stat %s: %s", path, WXM_STRERROR(errno));
  lua_createtable(L, 0, 3);
  wxm_pushsize(L, st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + (lua_Number)st.st_mtim.tv_nsec / 1e9);
  lua_setfield(L, -2, "mtime");
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory" : "other");
  lua_setfield(L, -2, "type");
  return 1;
}

static const luaL_Reg functions[] = {
  { "stat", core_stat },
  { NULL, NULL }
};

void wxm_fs_open (lua_State *L) {
  luaL_setfuncs(L, functions, 0);
}
