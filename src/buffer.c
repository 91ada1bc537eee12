/*
** buffer.c: a growable byte buffer. The session owns the one that holds response bodies, so a
** Lua error (out of memory while pushing a result) never leaks it: __gc frees it.
*/
#include <stdlib.h>
#include <string.h>

#include "common.h"

/* Above this, a reset gives the memory back instead of keeping it for the next call. */
#define KEEP_AT_MOST ((size_t)64 * 1024)

int wxm_buf_add (wxm_buf *b, const void *p, size_t n) {
  if (n > b->cap - b->len) {
    size_t cap = b->cap ? b->cap : 256;
    char *data;
    while (cap - b->len < n) {
      if (cap > ((size_t)-1) / 2) return 0;
      cap *= 2;
    }
    data = realloc(b->data, cap);
    if (data == NULL) return 0;
    b->data = data;
    b->cap = cap;
  }
  if (n > 0) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 1;
}

int wxm_buf_addstr (wxm_buf *b, const char *s) {
  return wxm_buf_add(b, s, strlen(s));
}

void wxm_buf_reset (wxm_buf *b) {
  if (b->cap > KEEP_AT_MOST) wxm_buf_free(b);
  b->len = 0;
}

void wxm_buf_free (wxm_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
