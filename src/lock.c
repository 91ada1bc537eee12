/*
** lock.c: core.lock(path, timeout), an exclusive flock on a file, so that several processes
** (CLI runs, workers) refresh a token one at a time. flock because the OS releases it when the
** holder dies. The lock userdata follows the session's lifetime rules: created unlocked with its
** metatable set before the file is opened; one idempotent release behind :unlock(), __gc, __close.
*/
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

typedef struct wxm_lock {
  int fd;                 /* -1 once unlocked */
} wxm_lock;

static void release (wxm_lock *k) {
  if (k->fd >= 0) {
    flock(k->fd, LOCK_UN);
    close(k->fd);
    k->fd = -1;
  }
}

/*
** core.lock(path, timeout) -> lock, or nil, message, "timeout"|"io" (or "input" for a NUL byte).
** The lock file is created 0600, never through a symlink (O_NOFOLLOW), and must be a regular file:
** a planted link, FIFO or directory is refused, not opened (O_NONBLOCK: a FIFO cannot hang it).
*/
static int core_lock (lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  double timeout = (double)luaL_optnumber(L, 2, 0);
  double deadline = wxm_monotonic() + (timeout > 0 ? timeout : 0), wait = 0.005;
  struct stat st;
  wxm_lock *k;
  if (WXM_HAS_NUL(path, len)) return wxm_fail(L, "input", "the path holds a NUL byte");
  k = (wxm_lock *)lua_newuserdatauv(L, sizeof *k, 0);
  k->fd = -1;
  luaL_setmetatable(L, WXMEDIA_LOCK);
  k->fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0600);
  if (k->fd < 0 && errno == ELOOP) return wxm_fail(L, "io", "%s is a symbolic link", path);
  if (k->fd < 0) return wxm_fail(L, "io", "cannot open %s: %s", path, WXM_STRERROR(errno));
  if (fstat(k->fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    release(k);
    return wxm_fail(L, "io", "%s is not a regular file", path);
  }
  for (;;) {
    double now;
    if (flock(k->fd, LOCK_EX | LOCK_NB) == 0) return 1;
    if (errno != EWOULDBLOCK && errno != EINTR) {
      int e = errno;
      release(k);
      return wxm_fail(L, "io", "cannot lock %s: %s", path, WXM_STRERROR(e));
    }
    now = wxm_monotonic();
    if (now >= deadline) {
      release(k);
      return wxm_fail(L, "timeout", "%s is locked by another holder (waited %g s)", path,
                      timeout > 0 ? timeout : 0);
    }
    wxm_sleep(deadline - now < wait ? deadline - now : wait);
    if (wait < 0.05) wait *= 2;          /* short naps first: a token refresh takes milliseconds */
  }
}

static int lock_unlock (lua_State *L) {
  release((wxm_lock *)luaL_checkudata(L, 1, WXMEDIA_LOCK));
  return 0;
}

static int lock_tostring (lua_State *L) {
  wxm_lock *k = (wxm_lock *)luaL_checkudata(L, 1, WXMEDIA_LOCK);
  if (k->fd < 0) lua_pushliteral(L, WXMEDIA_LOCK " (unlocked)");
  else lua_pushfstring(L, WXMEDIA_LOCK " (%p)", (void *)k);
  return 1;
}

static const luaL_Reg methods[] = {
  { "unlock", lock_unlock },
  { NULL, NULL }
};

static const luaL_Reg metamethods[] = {
  { "__gc", lock_unlock },
#if LUA_VERSION_NUM >= 504
  { "__close", lock_unlock },
#endif
  { "__tostring", lock_tostring },
  { NULL, NULL }
};

static const luaL_Reg functions[] = {
  { "lock", core_lock },
  { NULL, NULL }
};

void wxm_lock_open (lua_State *L) {
  luaL_newmetatable(L, WXMEDIA_LOCK);
  luaL_setfuncs(L, metamethods, 0);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_setfuncs(L, functions, 0);
}
