# wxmedia: the C core (src/) built as wxmedia/core.so, the Lua layer (lua/), the command (bin/).
# Variable names follow LuaRocks' (CC, CFLAGS, LIBFLAG, LUA_INCDIR, CURL_INCDIR, OPENSSL_INCDIR,
# LIBDIR, LUADIR, DESTDIR); "where to find" (…_INCDIR, …_LIBDIR) stays apart from "where to
# install" (LIBDIR, LUADIR).

# 5.1, 5.2, 5.3, 5.4 or jit (LuaJIT 2.1, what OpenResty runs)
LUA_VERSION ?= 5.4
MULTIARCH   := $(shell $(or $(CC),cc) -print-multiarch 2>/dev/null)

ifeq ($(LUA_VERSION),jit)
LUA         ?= luajit
LUA_INCDIR  ?= /usr/include/luajit-2.1
LUA_ABI     := 5.1
else
LUA         ?= lua$(LUA_VERSION)
LUA_INCDIR  ?= /usr/include/lua$(LUA_VERSION)
LUA_ABI     := $(LUA_VERSION)
endif

CC          ?= cc
CURL_INCDIR ?= /usr/include/$(MULTIARCH)
CURL_LIBDIR ?= /usr/lib/$(MULTIARCH)
# OpenSSL's libcrypto (libssl-dev): the hashes (src/digest.c); libcurl already loads it for TLS
OPENSSL_INCDIR ?= /usr/include
OPENSSL_LIBDIR ?= /usr/lib/$(MULTIARCH)
CFLAGS      ?= -O2 -g
LIBFLAG     ?= -shared
# The strict set (LPeg's list, trimmed to what gcc and clang share); DEV=1 makes them errors.
WARNINGS    := -std=c99 -Wall -Wextra -Wshadow -Wconversion -Wsign-conversion -Wpointer-arith \
               -Wcast-qual -Wcast-align -Wwrite-strings -Wundef -Wmissing-prototypes \
               -Wstrict-prototypes -Wredundant-decls -Wdeclaration-after-statement \
               -Wdisabled-optimization -Wformat=2 -Werror=return-type
ifeq ($(DEV),1)
WARNINGS    += -Werror
endif
ALL_CFLAGS   = $(CFLAGS) $(WARNINGS) -fPIC -fvisibility=hidden -D_DEFAULT_SOURCE \
               -I$(LUA_INCDIR) -I$(CURL_INCDIR) -I$(OPENSSL_INCDIR)
ALL_LDFLAGS  = $(LIBFLAG) $(LDFLAGS) -L$(CURL_LIBDIR) -L$(OPENSSL_LIBDIR) -lcurl -lcrypto

BUILD_DIR   := build/lua$(LUA_VERSION)
CORE        := $(BUILD_DIR)/wxmedia/core.so
SRCS        := $(wildcard src/*.c)
HDRS        := $(wildcard src/*.h)

# install locations
PREFIX      ?= /usr/local
LIBDIR      ?= $(PREFIX)/lib/lua/$(LUA_ABI)
LUADIR      ?= $(PREFIX)/share/lua/$(LUA_ABI)
BINDIR      ?= $(PREFIX)/bin
DESTDIR     ?=

EMULATOR_DIR  ?= .emulator
EMULATOR_PORT ?= 0

.PHONY: all build deps test demo emulator emulator-stop bench install lint clean memcheck fuzz fuzz-ci

all: build
build: $(CORE)

$(CORE): $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(ALL_CFLAGS) -o $@ $(SRCS) $(ALL_LDFLAGS)

# Installs the Debian packages the project needs (as root), or names the one apt-get line to run.
deps:
	@.ci/deps

# The whole suite, on Lua 5.4 and on LuaJIT, against the local emulator; ends "N passed, N failed".
test: deps
	@$(MAKE) --no-print-directory DEV=1 LUA_VERSION=5.4 build
	@$(MAKE) --no-print-directory DEV=1 LUA_VERSION=jit build
	@spec/run

demo: deps build
	@$(LUA) examples/demo.lua

emulator:
	@emulator/wxmedia-emulator start --dir $(EMULATOR_DIR) --port $(EMULATOR_PORT)

emulator-stop:
	@emulator/wxmedia-emulator stop --dir $(EMULATOR_DIR)

bench: deps build
	@bench/run

# bin/wxmedia gets the shebang of $(LUA): the interpreter whose module folders it fills.
install: build
	install -d $(DESTDIR)$(LIBDIR)/wxmedia $(DESTDIR)$(LUADIR)/wxmedia $(DESTDIR)$(BINDIR)
	install -m 0755 $(CORE) $(DESTDIR)$(LIBDIR)/wxmedia/core.so
	install -m 0644 lua/wxmedia.lua $(DESTDIR)$(LUADIR)/wxmedia.lua
	cd lua && find wxmedia -name '*.lua' -exec install -D -m 0644 {} $(DESTDIR)$(LUADIR)/{} \;
	sed '1s|^#!.*|#!/usr/bin/env $(LUA)|' bin/wxmedia >$(DESTDIR)$(BINDIR)/wxmedia
	chmod 0755 $(DESTDIR)$(BINDIR)/wxmedia

# luacheck, cppcheck, and the rockspec's C sources against src/*.c (LuaRocks builds from its list).
lint:
	luacheck -q lua spec emulator bench bin/wxmedia examples fuzz
	cppcheck --quiet --error-exitcode=1 --enable=warning,style,performance,portability \
	  --inline-suppr --std=c99 -I src src
	@listed=$$(grep -o '"src/[^"]*\.c"' rockspec/wxmedia-scm-1.rockspec | tr -d '"' | sort); \
	present=$$(ls src/*.c | sort); \
	if [ "$$listed" != "$$present" ]; then \
	  echo "rockspec/wxmedia-scm-1.rockspec: the C sources differ from src/*.c:" >&2; \
	  echo "listed:" $$listed >&2; echo "in src:" $$present >&2; exit 1; fi

clean:
	rm -rf build

# Every spec that loads the C core in the busted process, on Lua 5.4 under valgrind memcheck: zero
# memory errors and zero definite leaks, else it fails (about 3 minutes). Only the Lua process is
# checked (not the emulator, nor curl). faults_spec is left out: its 0.25 s timeouts measure the
# network, and valgrind's slowdown would turn them into false timeouts.
MEMCHECK_SPECS ?= $(wildcard spec/core_*_spec.lua) spec/media_spec.lua spec/retry_spec.lua \
  spec/reuse_spec.lua spec/store_spec.lua spec/thread_spec.lua spec/token_spec.lua spec/wxmedia_spec.lua \
  spec/cli_spec.lua spec/security_spec.lua spec/load_spec.lua spec/hostile_spec.lua spec/source_spec.lua \
  spec/many_spec.lua spec/reply_spec.lua spec/messages_spec.lua spec/client_get_spec.lua spec/config_spec.lua
memcheck:
	@$(MAKE) --no-print-directory DEV=1 LUA_VERSION=5.4 build
	@tmp=$$(mktemp -d "$${TMPDIR:-/tmp}/wxmedia-memcheck-XXXXXX"); \
	WXMEDIA_TEST_TMP=$$tmp WXMEDIA_ROOT=$$PWD WXMEDIA_LUA=lua5.4 \
	valgrind -q --keep-debuginfo=yes --leak-check=full --errors-for-leak-kinds=definite \
	  --show-leak-kinds=definite --suppressions=spec/core_memcheck.supp --error-exitcode=99 \
	  lua5.4 "$$(command -v busted)" --cpath='build/lua5.4/?.so' -o plainTerminal $(MEMCHECK_SPECS); \
	rc=$$?; find "$$tmp" -name '*.pid' | while read -r f; do kill "$$(cat "$$f")" 2>/dev/null; done; \
	rm -rf "$$tmp"; \
	if [ $$rc = 0 ]; then echo "memcheck: 0 errors, 0 definite leaks"; \
	elif [ $$rc = 99 ]; then echo "memcheck: valgrind found errors or definite leaks" >&2; exit 1; \
	else echo "memcheck: the specs failed" >&2; exit 1; fi

# libFuzzer (clang, Debian's libclang-rt-14-dev), two targets:
#   response: what the core reads from a server: the header lines, Content-Disposition and its
#             filename, "file or JSON", the body cap (src/response.c);
#   answer:   WeChat's JSON answers as the client reads them (lua/wxmedia/answer.lua on lua-cjson,
#             in a Lua 5.4 state: fuzz/answer_check.lua states the promises).
# `make fuzz` runs each FUZZ_TIME seconds (default 600), `make fuzz-ci` 30. New inputs go to
# fuzz/corpus-run/ and fuzz/answer_corpus-run/ (not committed); the seeds are read, never written.
FUZZ_CC     ?= clang
FUZZ_TIME   ?= 600
FUZZ_FLAGS  := -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_TARGET := build/fuzz/response_fuzz
ANSWER_FUZZ := build/fuzz/answer_fuzz
$(FUZZ_TARGET): fuzz/response_fuzz.c src/response.c src/response.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -Isrc -o $@ fuzz/response_fuzz.c src/response.c
$(ANSWER_FUZZ): fuzz/answer_fuzz.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -I/usr/include/lua5.4 -o $@ fuzz/answer_fuzz.c -llua5.4
fuzz: $(FUZZ_TARGET) $(ANSWER_FUZZ)
	@mkdir -p fuzz/corpus-run fuzz/answer_corpus-run
	$(FUZZ_TARGET) -max_total_time=$(FUZZ_TIME) -max_len=4096 -print_final_stats=1 \
	  -dict=fuzz/response.dict -artifact_prefix=build/fuzz/ fuzz/corpus-run fuzz/corpus
	WXMEDIA_ROOT=$(CURDIR) $(ANSWER_FUZZ) -max_total_time=$(FUZZ_TIME) -max_len=4096 -print_final_stats=1 \
	  -dict=fuzz/answer.dict -artifact_prefix=build/fuzz/answer- fuzz/answer_corpus-run fuzz/answer_corpus
fuzz-ci:
	@$(MAKE) --no-print-directory fuzz FUZZ_TIME=30
