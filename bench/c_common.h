/*
** c_common.h: what the C references of benchmark 1 (c_loop.c, c_multi.c) share: the buffer that
** keeps an upload's answer (small JSON, checked for a media_id) and the monotonic clock.
*/
#ifndef BENCH_C_COMMON_H
#define BENCH_C_COMMON_H

#include <string.h>
#include <time.h>

struct answer {
  char data[4096];
  size_t len;
};

static void answer_reset (struct answer *a) {
  a->len = 0;
  a->data[0] = '\0';
}

/* libcurl's write function: ud is the struct answer (the rest of a longer answer is dropped). */
static size_t keep_answer (char *ptr, size_t size, size_t nmemb, void *ud) {
  struct answer *a = (struct answer *)ud;
  size_t n = size * nmemb;
  size_t room = sizeof a->data - 1 - a->len;
  memcpy(a->data + a->len, ptr, n < room ? n : room);
  a->len += n < room ? n : room;
  a->data[a->len] = '\0';
  return n;
}

static double now (void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#endif
