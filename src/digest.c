/*
** digest.c: hashes from OpenSSL's libcrypto (EVP), which libcurl already loads for TLS.
**   core.sha256_file(path) -> hex   a file read through a fixed buffer: a 10 MB video costs 16 KiB
**                                   (media_id reuse recognises a file it already uploaded by it)
**   core.sha256(bytes)     -> hex   bytes in memory (media_id reuse of an upload from memory)
**   core.sha1(bytes)       -> hex   WeChat signs its callbacks with the SHA-1 of token, timestamp
**                                   and nonce
** Strings are hashed with their length: NUL bytes are data. A failure of libcrypto itself (out of
** memory, a digest a provider configuration disabled) is nil, message, "config".
*/
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>

#include "common.h"

#define READ_BUFFER 16384

/* The digest as lowercase hex on the stack. */
static void push_hex (lua_State *L, const unsigned char *md, unsigned int len) {
  static const char digits[] = "0123456789abcdef";
  char hex[2 * EVP_MAX_MD_SIZE];
  unsigned int i;
  for (i = 0; i < len; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 15];
  }
  lua_pushlstring(L, hex, 2 * (size_t)len);
}

/* nil, "OpenSSL cannot compute <name>: <its reason>", "config"; its error queue is emptied. */
static int fail_crypto (lua_State *L, const char *name) {
  char reason[256] = "unknown error";
  unsigned long e = ERR_get_error();
  if (e != 0) ERR_error_string_n(e, reason, sizeof reason);
  ERR_clear_error();
  return wxm_fail(L, "config", "OpenSSL cannot compute %s: %s", name, reason);
}

static int push_digest (lua_State *L, const EVP_MD *md, const char *name) {
  size_t len;
  const char *data = luaL_checklstring(L, 1, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int outlen = 0;
  if (md == NULL || EVP_Digest(data, len, out, &outlen, md, NULL) != 1) return fail_crypto(L, name);
  push_hex(L, out, outlen);
  return 1;
}

/* core.sha256(bytes) -> 64 hex digits */
static int core_sha256 (lua_State *L) {
  return push_digest(L, EVP_sha256(), "SHA-256");
}

/* core.sha1(bytes) -> 40 hex digits */
static int core_sha1 (lua_State *L) {
  return push_digest(L, EVP_sha1(), "SHA-1");
}

/* Feeds the open regular file fd to ctx; 0, or the errno of a failed read (-1: libcrypto failed). */
static int digest_fd (EVP_MD_CTX *ctx, int fd) {
  unsigned char buf[READ_BUFFER];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) return 0;
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1) return -1;
  }
}

/* core.sha256_file(path) -> hex, or nil, message, "input" */
static int core_sha256_file (lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int outlen = 0;
  EVP_MD_CTX *ctx;
  struct stat st;
  int fd, e;
  if (WXM_HAS_NUL(path, len)) return wxm_fail(L, "input", "the path holds a NUL byte");
  fd = wxm_open_read(path);
  if (fd < 0) return wxm_fail(L, "input", "cannot open %s: %s", path, WXM_STRERROR(errno));
  if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
    close(fd);
    return wxm_fail(L, "input", "%s is %s", path, wxm_what_it_is(st.st_mode));
  }
  ctx = EVP_MD_CTX_new();
  if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) e = -1;
  else e = digest_fd(ctx, fd);
  close(fd);
  if (e == 0 && EVP_DigestFinal_ex(ctx, out, &outlen) != 1) e = -1;
  EVP_MD_CTX_free(ctx);
  if (e > 0) return wxm_fail(L, "input", "cannot read %s: %s", path, WXM_STRERROR(e));
  if (e < 0) return fail_crypto(L, "SHA-256");
  push_hex(L, out, outlen);
  return 1;
}

static const luaL_Reg functions[] = {
  { "sha256_file", core_sha256_file },
  { "sha256", core_sha256 },
  { "sha1", core_sha1 },
  { NULL, NULL }
};

void wxm_digest_open (lua_State *L) {
  luaL_setfuncs(L, functions, 0);
}
