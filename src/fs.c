/*
** fs.c: core.stat and core.lstat, what the Lua layer needs to know about a file before sending it
** (and about the file store's path); core.write_private, how the file store writes its file.
*/
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define HEAD_MAX 256

/*
** Opens a file the core reads (to upload, hash or sniff it), or -1 with errno. O_NONBLOCK: opening
** a FIFO does not wait for a writer (the callers refuse anything but a regular file, and reads of
** a regular file never block); O_NOCTTY: a terminal never becomes the controlling one.
*/
int wxm_open_read (const char *path) {
  return open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
}

/* What a path that is not a regular file is, for "<path> is <it>". */
const char *wxm_what_it_is (mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISBLK(m)) return "a block device";
  if (S_ISLNK(m)) return "a symbolic link";
  return "not a regular file";
}

/* The first n bytes of a regular file as a string on the stack, or nothing pushed (returns 0) when
   it cannot be opened or read or is empty: the caller then reads it its own way, for its message. */
static int push_head (lua_State *L, const char *path, size_t n) {
  char buf[HEAD_MAX];
  size_t got = 0;
  int fd = wxm_open_read(path);
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

static int push_stat (lua_State *L, int follow) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  lua_Integer n = luaL_optinteger(L, 2, 0);
  struct stat st;
  luaL_argcheck(L, n >= 0 && n <= HEAD_MAX, 2, "head size out of range (0 to 256)");
  if (WXM_HAS_NUL(path, len)) return wxm_fail(L, "input", "the path holds a NUL byte");
  if ((follow ? stat(path, &st) : lstat(path, &st)) != 0)
    return wxm_fail(L, "input", "cannot access %s: %s", path, WXM_STRERROR(errno));
  lua_createtable(L, 0, 4);
  if (n > 0 && S_ISREG(st.st_mode) && push_head(L, path, (size_t)n)) lua_setfield(L, -2, "head");
  wxm_pushsize(L, st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + (lua_Number)st.st_mtim.tv_nsec / 1e9);
  lua_setfield(L, -2, "mtime");
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory"
                    : S_ISLNK(st.st_mode) ? "symlink" : "other");
  lua_setfield(L, -2, "type");
  return 1;
}

/* core.stat(path [, n]) -> { size = N, mtime = seconds, type = "file"|"directory"|"other",
   head = the first n bytes (n <= 256) of a regular file } : the Lua layer sniffs the format
   from head, so one call does what stat plus io.open, read and close did (a stdio buffer and a
   file handle for the collector at every upload). Follows symlinks. */
static int core_stat (lua_State *L) {
  return push_stat(L, 1);
}

/* core.lstat(path [, n]): the same about the path itself; a symlink is type "symlink". */
static int core_lstat (lua_State *L) {
  return push_stat(L, 0);
}

/*
** core.write_private(path, data) -> true, or nil, message, kind. For a file only its owner may read
** (the file store holds tokens): data goes to a new temp file in path's folder, created 0600 with
** O_EXCL|O_NOFOLLOW (never a planted file or link), flushed to disk, renamed over path. A path that
** is a symlink or not a regular file is refused (io): it is not replaced, nor written through.
*/
static int core_write_private (lua_State *L) {
  size_t len, datalen;
  const char *path = luaL_checklstring(L, 1, &len);
  const char *data = luaL_checklstring(L, 2, &datalen);
  wxm_temp tmp = WXM_TEMP_NONE;
  struct stat st;
  int e;
  if (WXM_HAS_NUL(path, len)) return wxm_fail(L, "input", "the path holds a NUL byte");
  if (lstat(path, &st) == 0) {
    if (!S_ISREG(st.st_mode)) return wxm_fail(L, "io", "%s is %s", path, wxm_what_it_is(st.st_mode));
  }
  else if (errno != ENOENT) return wxm_fail(L, "io", "cannot write %s: %s", path, WXM_STRERROR(errno));
  if ((e = wxm_temp_open(&tmp, path, 0600)) != 0)
    return wxm_fail(L, "io", "cannot write %s: %s", path, WXM_STRERROR(e));
  while (datalen > 0) {
    ssize_t w = write(tmp.fd, data, datalen);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      e = errno;
      wxm_temp_discard(&tmp);
      return wxm_fail(L, "io", "cannot write %s: %s", path, WXM_STRERROR(e));
    }
    data += w;
    datalen -= (size_t)w;
  }
  if ((e = wxm_temp_close(&tmp, 1)) != 0 || (e = wxm_temp_rename(&tmp, path, 0)) != 0) {
    wxm_temp_discard(&tmp);
    return wxm_fail(L, "io", "cannot write %s: %s", path, WXM_STRERROR(e));
  }
  lua_pushboolean(L, 1);
  return 1;
}

static const luaL_Reg functions[] = {
  { "stat", core_stat },
  { "lstat", core_lstat },
  { "write_private", core_write_private },
  { NULL, NULL }
};

void wxm_fs_open (lua_State *L) {
  luaL_setfuncs(L, functions, 0);
}
