/*
** answer_fuzz.c: libFuzzer target for WeChat's JSON answers as the client reads them
** (lua/wxmedia/answer.lua, on lua-cjson, in a real Lua 5.4 state). One input is a selector byte,
** then an answer body. The selector picks the HTTP status (200, or a gateway's 503) the body comes
** with; the body goes through answer.decode, then, when it is WeChat's success, through the readers
** of an upload, a token and a video answer (fuzz/answer_check.lua states what each must give).
** A Lua error (a raise where a `nil, message, details` was due) or a broken promise aborts.
** The Lua VM and lua-cjson are not instrumented, so the Lua code's own coverage is given to
** libFuzzer: a line hook counts each line run in the project's Lua files into libFuzzer's extra
** counters (a section it reads as coverage), so an input that reaches a new line of answer.lua or
** errors.lua is kept and mutated further. lua-cjson's C stays dark: the dictionary of JSON words and
** numeric edge cases (fuzz/answer.dict) drives it.
*/
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lua.h"
#include "lauxlib.h"
#include "lualib.h"

static lua_State *L;
static int check_ref;

/* libFuzzer reads the bytes of this section as coverage counters, besides its own. */
#define LINE_SLOTS 8192
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t line_counters[LINE_SLOTS];

/* Counts a line of the project's Lua code (lua/wxmedia/...): FNV-1a of the file name and line. */
static void count_line (lua_State *S, lua_Debug *ar) {
  const char *src;
  uint32_t h = 2166136261u;
  if (!lua_getinfo(S, "S", ar)) return;
  src = ar->source;
  if (strstr(src, "/lua/wxmedia/") == NULL) return;
  for (; *src != '\0'; src++) h = (h ^ (uint8_t)*src) * 16777619u;
  h = (h ^ (uint32_t)ar->currentline) * 16777619u;
  if (line_counters[h % LINE_SLOTS] < 255) line_counters[h % LINE_SLOTS]++;
}

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* WXMEDIA_ROOT (default ".") holds lua/ and fuzz/answer_check.lua. */
int LLVMFuzzerInitialize (int *argc, char ***argv) {
  const char *root = getenv("WXMEDIA_ROOT");
  (void)argc;
  (void)argv;
  L = luaL_newstate();
  luaL_openlibs(L);
  lua_pushstring(L, root ? root : ".");
  lua_setglobal(L, "ROOT");
  if (luaL_dostring(L, "package.path = ROOT .. '/lua/?.lua;' .. package.path\n"
                       "return dofile(ROOT .. '/fuzz/answer_check.lua')") != LUA_OK) {
    fprintf(stderr, "answer_fuzz: %s\n", lua_tostring(L, -1));
    abort();
  }
  check_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_sethook(L, count_line, LUA_MASKLINE, 0);
  return 0;
}

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, check_ref);
  lua_pushinteger(L, data[0]);
  lua_pushlstring(L, (const char *)data + 1, size - 1);
  if (lua_pcall(L, 2, 0, 0) != LUA_OK) {
    fprintf(stderr, "answer_fuzz: %s\n", lua_tostring(L, -1));
    abort();
  }
  lua_settop(L, 0);
  return 0;
}
