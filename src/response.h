/*
** response.h: how the core reads what a server sends, as pure functions over bytes (no Lua, no
** libcurl handle, no file): the Content-Disposition header and its filename, "file or JSON" from
** the status and headers, the sniff of a media/get body's first bytes, the cap on in-memory bodies.
** Kept apart so that the libFuzzer target (fuzz/response_fuzz.c) links exactly this code.
*/
#ifndef WXMEDIA_RESPONSE_H
#define WXMEDIA_RESPONSE_H

#include <stddef.h>

/* The room kept for a Content-Disposition value (the core's and the fuzz harness's buffers). */
#define WXM_CD_MAX 1024

/* What becomes of a download's body. */
enum wxm_mode {
  WXM_BODY,        /* keep the body in memory (capped) */
  WXM_UNDECIDED,   /* a download before its first body byte */
  WXM_SNIFF,       /* looks like a file: waiting for the first byte that is not a BOM or a blank */
  WXM_FILE         /* streaming into the temp file */
};

/*
** What the first bytes of a sniffed body say. A body that ends while the answer is still MORE
** (empty, only blanks, only a BOM) is not a file: it is kept in memory, as an error document.
*/
enum wxm_sniff {
  WXM_SNIFF_MORE,      /* empty or blank so far (after an optional UTF-8 BOM), within the cap */
  WXM_SNIFF_FILE,      /* the file itself: write it */
  WXM_SNIFF_JSON,      /* starts with '{' (after a BOM and blanks) and is small: an error document */
  WXM_SNIFF_OVER_CAP   /* an error document (JSON or blanks) larger than the cap: fail the call */
};

/*
** From the status and headers alone: WXM_BODY (kept in memory) or WXM_SNIFF (a file, unless its
** first bytes say otherwise). Only a 200 can be a file, for media/get and a CDN alike: a 204 has no
** body, a 206 is a part of one, any other status is an error page. media_get: 1 for media/get's
** rules (a file has a Content-Disposition), 0 for a CDN's.
*/
enum wxm_mode wxm_decide (long status, const char *content_type, int media_get, int has_cd);

/*
** data[0..len) is all of a sniffed body so far; data[0..from) was already found MORE.
** content_length: the response's Content-Length, or -1 when it has none.
*/
enum wxm_sniff wxm_sniff_body (const char *data, size_t len, size_t from, long long content_length,
                               size_t max_body);

/* 1 when n more bytes fit in a body of `have` bytes capped at `max`. */
int wxm_body_fits (size_t have, size_t n, size_t max);

/* 1 when a header line (as libcurl hands it, with its CRLF) starts a new response: "HTTP/...". */
int wxm_header_starts_response (const char *line, size_t n);

/*
** When the header line is a Content-Disposition, copies its value (blanks and CRLF trimmed, cut to
** outsize - 1 bytes, NUL-terminated) into out and returns 1; else returns 0 and leaves out alone.
*/
int wxm_header_cd (const char *line, size_t n, char *out, size_t outsize);

/*
** The filename of a Content-Disposition value: filename*=charset'lang'%xx (RFC 5987) wins, else
** filename="..." or filename=token. Writes at most outsize - 1 bytes and a NUL into out (outsize
** >= 1); returns 1 when a filename parameter was found. Reported only: it never chooses a path.
*/
int wxm_parse_filename (const char *cd, char *out, size_t outsize);

#endif
