/*
** sha256.c: core.sha256_file(path), the SHA-256 of a file (FIPS 180-4), read through a fixed
** buffer so a 10 MB video costs 16 KiB of memory. The Lua layer uses it to recognise a file it
** already uploaded (media_id reuse).
*/
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

typedef struct sha256 {
  uint32_t h[8];
  uint64_t bytes;          /* message length so far */
  unsigned char block[64];
  size_t used;             /* bytes waiting in block */
} sha256;

/* The first 32 bits of the fractional parts of the cube roots of the first 64 primes. */
static const uint32_t K[64] = {
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2
};

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_init (sha256 *c) {
  static const uint32_t h0[8] = {   /* fractional parts of the square roots of the first 8 primes */
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19
  };
  memcpy(c->h, h0, sizeof h0);
  c->bytes = 0;
  c->used = 0;
}

static void sha256_block (sha256 *c, const unsigned char *p) {
  uint32_t w[64], a, b, d, e, f, g, h, cc;
  int i;
  for (i = 0; i < 16; i++)
    w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 | (uint32_t)p[4 * i + 2] << 8
         | (uint32_t)p[4 * i + 3];
  for (i = 16; i < 64; i++) {
    uint32_t s0 = ROTR(w[i - 15], 7) ^ ROTR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROTR(w[i - 2], 17) ^ ROTR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  a = c->h[0]; b = c->h[1]; cc = c->h[2]; d = c->h[3];
  e = c->h[4]; f = c->h[5]; g = c->h[6]; h = c->h[7];
  for (i = 0; i < 64; i++) {
    uint32_t t1 = h + (ROTR(e, 6) ^ ROTR(e, 11) ^ ROTR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
    uint32_t t2 = (ROTR(a, 2) ^ ROTR(a, 13) ^ ROTR(a, 22)) + ((a & b) ^ (a & cc) ^ (b & cc));
    h = g; g = f; f = e; e = d + t1;
    d = cc; cc = b; b = a; a = t1 + t2;
  }
  c->h[0] += a; c->h[1] += b; c->h[2] += cc; c->h[3] += d;
  c->h[4] += e; c->h[5] += f; c->h[6] += g; c->h[7] += h;
}

static void sha256_update (sha256 *c, const unsigned char *p, size_t n) {
  c->bytes += n;
  if (c->used > 0) {
    size_t take = 64 - c->used < n ? 64 - c->used : n;
    memcpy(c->block + c->used, p, take);
    c->used += take;
    p += take;
    n -= take;
    if (c->used < 64) return;
    sha256_block(c, c->block);
    c->used = 0;
  }
  for (; n >= 64; p += 64, n -= 64) sha256_block(c, p);
  memcpy(c->block, p, n);
  c->used = n;
}

/* Pads with 0x80, zeros and the bit length, then writes the digest as 64 hex digits. */
static void sha256_hex (sha256 *c, char hex[65]) {
  static const char digits[] = "0123456789abcdef";
  uint64_t bits = c->bytes * 8;
  unsigned char pad[72];
  size_t padlen = (c->used < 56 ? 56 : 120) - c->used;
  int i;
  memset(pad, 0, sizeof pad);
  pad[0] = 0x80;
  for (i = 0; i < 8; i++) pad[padlen + (size_t)i] = (unsigned char)(bits >> (56 - 8 * i));
  sha256_update(c, pad, padlen + 8);
  for (i = 0; i < 32; i++) {
    unsigned char byte = (unsigned char)(c->h[i / 4] >> (24 - 8 * (i % 4)));
    hex[2 * i] = digits[byte >> 4];
    hex[2 * i + 1] = digits[byte & 15];
  }
  hex[64] = '\0';
}

/* core.sha256_file(path) -> hex, or nil, message, "input" */
static int core_sha256_file (lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  unsigned char buf[16384];
  char hex[65];
  sha256 c;
  struct stat st;
  int fd;
  if (WXM_HAS_NUL(path, len)) return wxm_fail(L, "input", "the path holds a NUL byte");
  fd = wxm_open_read(path);
  if (fd < 0) return wxm_fail(L, "input", "cannot open %s: %s", path, WXM_STRERROR(errno));
  if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode)) {
    close(fd);
    return wxm_fail(L, "input", "%s is %s", path, wxm_what_it_is(st.st_mode));
  }
  sha256_init(&c);
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      int e = errno;
      if (e == EINTR) continue;
      close(fd);
      return wxm_fail(L, "input", "cannot read %s: %s", path, WXM_STRERROR(e));
    }
    sha256_update(&c, buf, (size_t)n);
  }
  close(fd);
  sha256_hex(&c, hex);
  lua_pushstring(L, hex);
  return 1;
}

static const luaL_Reg functions[] = {
  { "sha256_file", core_sha256_file },
  { NULL, NULL }
};

void wxm_sha256_open (lua_State *L) {
  luaL_setfuncs(L, functions, 0);
}
