/*
** fs.c: core.stat(path), what the Lua layer needs to know about a file before sending it.
*/
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define HEAD_MAX 256

/* The first n bytes of a regular file as a string on the stack, or nothing pushed (returns 0) when
   it cannot be opened or read or is empty: the caller then reads it its own way, for its message. */
static int push_head (lua_State *L, const char *path, size_t n) {
  char buf[HEAD_MAX];
  size_t got = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  while (got < n) {
    ssize_t r = read(fd, buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  if (got == 0) return 0;
  lua_pushlstring(L, buf, got);
  return 1;
}

/* core.stat(path [, n]) -> { size = N, mtime = seconds, type = "file"|"directory"|"other",
   head = the first n bytes (n <= 256) of a regular file } : the Lua layer sniffs the format
   from head, so one call does what stat plus io.open, read and close did (a stdio buffer and a
   file handle for the collector at every upload). */
static int core_stat (lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  lua_Integer n = luaL_optinteger(L, 2, 0);
  struct stat st;
  luaL_argcheck(L, n >= 0 && n <= HEAD_MAX, 2, "head size out of range (0 to 256)");
  if (stat(path, &st) != 0) return wxm_fail(L, "input", "cannot access %s: %s", path, WXM_STRERROR(errno));
  lua_createtable(L, 0, 4);
  if (n > 0 && S_ISREG(st.st_mode) && push_head(L, path, (size_t)n)) lua_setfield(L, -2, "head");
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
