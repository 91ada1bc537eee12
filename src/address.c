/*
** address.c: the addresses fetch must not reach unless allowed: a URL from a server (a video's
** CDN link) must not make this process talk to itself, its network or a cloud metadata service
** (SSRF). Pure functions over addresses: loopback, private, shared (CGNAT), link-local,
** unspecified, multicast, reserved, unique-local IPv6, and IPv6 forms that carry such an IPv4
** address (mapped, compatible, NAT64, 6to4).
*/
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "common.h"

static int private_v4 (uint32_t a) {
  static const struct { uint32_t net, mask; } nets[] = {
    { 0x00000000u, 0xFF000000u },   /* 0.0.0.0/8: this network, 0.0.0.0 */
    { 0x0A000000u, 0xFF000000u },   /* 10/8 */
    { 0x64400000u, 0xFFC00000u },   /* 100.64/10: shared address space (carrier NAT) */
    { 0x7F000000u, 0xFF000000u },   /* 127/8: loopback */
    { 0xA9FE0000u, 0xFFFF0000u },   /* 169.254/16: link-local, cloud metadata services */
    { 0xAC100000u, 0xFFF00000u },   /* 172.16/12 */
    { 0xC0000000u, 0xFFFFFF00u },   /* 192.0.0/24: protocol assignments */
    { 0xC0A80000u, 0xFFFF0000u },   /* 192.168/16 */
    { 0xC6120000u, 0xFFFE0000u },   /* 198.18/15: benchmarking */
    { 0xE0000000u, 0xF0000000u },   /* 224/4: multicast */
    { 0xF0000000u, 0xF0000000u },   /* 240/4: reserved, and 255.255.255.255 */
  };
  size_t i;
  for (i = 0; i < sizeof nets / sizeof nets[0]; i++)
    if ((a & nets[i].mask) == nets[i].net) return 1;
  return 0;
}

static uint32_t v4_at (const unsigned char *b) {
  return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

static int private_v6 (const unsigned char *b) {
  static const unsigned char zeros[16] = { 0 };
  static const unsigned char mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF };
  static const unsigned char nat64[12] = { 0, 0x64, 0xFF, 0x9B, 0, 0, 0, 0, 0, 0, 0, 0 };
  if (memcmp(b, mapped, 12) == 0 || memcmp(b, nat64, 12) == 0) return private_v4(v4_at(b + 12));
  if (memcmp(b, zeros, 12) == 0) return 1;          /* ::, ::1 and the IPv4-compatible ::a.b.c.d */
  if (b[0] == 0x20 && b[1] == 0x02) return private_v4(v4_at(b + 2));    /* 2002::/16: 6to4 */
  if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) return 1;    /* fe80::/10: link-local */
  if (b[0] == 0xFE && (b[1] & 0xC0) == 0xC0) return 1;    /* fec0::/10: site-local (deprecated) */
  if ((b[0] & 0xFE) == 0xFC) return 1;                    /* fc00::/7: unique local */
  if (b[0] == 0xFF) return 1;                             /* ff00::/8: multicast */
  return 0;
}

/* 1 when sa is such an address (its text then in text[textsize]); other families are refused too. */
int wxm_address_private (const struct sockaddr *sa, char *text, size_t textsize) {
  if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
    if (!private_v4(ntohl(in->sin_addr.s_addr))) return 0;
    if (inet_ntop(AF_INET, &in->sin_addr, text, (socklen_t)textsize) == NULL) text[0] = '\0';
    return 1;
  }
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
    if (!private_v6(in6->sin6_addr.s6_addr)) return 0;
    if (inet_ntop(AF_INET6, &in6->sin6_addr, text, (socklen_t)textsize) == NULL) text[0] = '\0';
    return 1;
  }
  if (textsize > 0) snprintf(text, textsize, "address family %d", (int)sa->sa_family);
  return 1;
}

/* The same for an address as text (libcurl's CURLINFO_PRIMARY_IP); text that is no address: 1. */
int wxm_address_private_text (const char *ip) {
  unsigned char b[16];
  if (inet_pton(AF_INET, ip, b) == 1) return private_v4(v4_at(b));
  if (inet_pton(AF_INET6, ip, b) == 1) return private_v6(b);
  return 1;
}
