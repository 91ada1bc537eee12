/*
** clock.c: core.now() (monotonic, for durations and token expiry), core.time() (wall clock),
** core.sleep(seconds) (for retry backoff in plain Lua, where there is no ngx.sleep).
*/
#include <errno.h>
#include <time.h>

#include "common.h"

static double clock_seconds (clockid_t id) {
  struct timespec ts;
  if (clock_gettime(id, &ts) != 0) return 0;
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double wxm_monotonic (void) {
  return clock_seconds(CLOCK_MONOTONIC);
}

static int core_now (lua_State *L) {
  lua_pushnumber(L, (lua_Number)clock_seconds(CLOCK_MONOTONIC));
  return 1;
}

static int core_time (lua_State *L) {
  lua_pushnumber(L, (lua_Number)clock_seconds(CLOCK_REALTIME));
  return 1;
}

void wxm_sleep (double seconds) {
  struct timespec req, rem;
  if (!(seconds > 0)) return;            /* also NaN */
  if (seconds > 1e9) seconds = 1e9;
  req.tv_sec = (time_t)seconds;
  req.tv_nsec = (long)((seconds - (double)req.tv_sec) * 1e9);
  while (nanosleep(&req, &rem) != 0 && errno == EINTR) req = rem;
}

static int core_sleep (lua_State *L) {
  wxm_sleep((double)luaL_checknumber(L, 1));
  return 0;
}

static const luaL_Reg functions[] = {
  { "now", core_now },
  { "time", core_time },
  { "sleep", core_sleep },
  { NULL, NULL }
};

void wxm_clock_open (lua_State *L) {
  luaL_setfuncs(L, functions, 0);
}
