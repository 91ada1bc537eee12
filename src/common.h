/*
** common.h: what the files of wxmedia.core share. Everything here is hidden by -fvisibility=hidden;
** the only exported symbol is luaopen_wxmedia_core (core.c).
*/
#ifndef WXMEDIA_COMMON_H
#define WXMEDIA_COMMON_H

#include <stddef.h>
#include <sys/types.h>
#include <curl/curl.h>

#include "compat.h"
#include "response.h"       /* enum wxm_mode, and the header and body rules */

/* The project's version: the one place it is written (core._VERSION; the User-Agent) */
#define WXMEDIA_VERSION   "0.1.0"
#define WXMEDIA_UA_PREFIX "wxmedia/" WXMEDIA_VERSION
#define WXMEDIA_SESSION   "wxmedia.session"
#define WXMEDIA_LOCK      "wxmedia.lock"
#define WXMEDIA_BASE_URL  "https://api.weixin.qq.com"       /* core.DEFAULT_BASE_URL */
#define WXMEDIA_MAX_BODY  ((size_t)1 << 20)      /* cap for bodies kept in memory: 1 MiB */
#define WXMEDIA_RECV_BUFFER (100L * 1024)       /* libcurl receive buffer of downloads */

#if defined(__GNUC__)
#define WXM_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WXM_PRINTF(f, a)
#endif

/* A string read with its length holds a NUL byte: C would see a shorter one (a cut path). */
#define WXM_HAS_NUL(s, len) (strlen(s) != (len))

/* {====== buffer.c: a growable byte buffer (response bodies, URLs) ====== */
typedef struct wxm_buf {
  char *data;
  size_t len, cap;
} wxm_buf;

int wxm_buf_add (wxm_buf *b, const void *p, size_t n);   /* 0 when out of memory */
int wxm_buf_addstr (wxm_buf *b, const char *s);
void wxm_buf_reset (wxm_buf *b);
void wxm_buf_free (wxm_buf *b);
/* }====== */

/* {====== temp.c: temp files beside a destination, registered so a signal handler can remove them ====== */
typedef struct wxm_temp {
  int fd;                         /* -1 when closed */
  int slot;                       /* its entry in the registry; -1 when the registry was full */
  char *path;                     /* malloc'd; NULL when there is no temp file */
} wxm_temp;

#define WXM_TEMP_NONE { -1, -1, NULL }
int wxm_temp_open (wxm_temp *tmp, const char *beside, mode_t mode);        /* 0, or an errno */
int wxm_temp_close (wxm_temp *tmp, int sync);                            /* 0, or an errno */
int wxm_temp_rename (wxm_temp *tmp, const char *dest, int no_replace);   /* 0, or an errno */
void wxm_temp_discard (wxm_temp *tmp);
void wxm_temp_open_lib (lua_State *L);    /* remove_temp_files_on_signals */
/* }====== */

/* {====== session.c: the session userdata ====== */
typedef struct wxm_session {
  CURL *curl;                     /* NULL once closed */
  char *base_url;                 /* without a trailing slash */
  wxm_buf body;                   /* the current call's in-memory body */
  wxm_buf upload_url, upload_key; /* the last upload's URL, and the token and type it holds */
  curl_mime *mime;                /* the current upload's form */
  struct curl_slist *headers;     /* the current call's extra request headers */
  int fsync;                      /* flush a downloaded file to disk before renaming it */
  int busy;                       /* inside curl_easy_perform: its own Lua callbacks run */
  char errbuf[CURL_ERROR_SIZE];
} wxm_session;

wxm_session *wxm_check_session (lua_State *L);
int wxm_field (lua_State *L, int idx, const char *key, int type);
int wxm_flag (lua_State *L, int idx, const char *key);
void wxm_session_check_options (lua_State *L, int idx);
void wxm_session_setup (lua_State *L, int idx, wxm_session *s);
void wxm_session_release (wxm_session *s);
void wxm_session_open (lua_State *L);
/* }====== */

/* {====== transfer.c: one call on a session: callbacks, perform, results ====== */
enum wxm_abort { WXM_NOT_ABORTED, WXM_ABORT_FALSE, WXM_ABORT_ERROR };

struct wxm_transfer;
/* Where a response body goes; returns n, or 0 to stop the transfer (CURLE_WRITE_ERROR). */
typedef size_t (*wxm_writer) (struct wxm_transfer *t, const char *p, size_t n);

/* An upload's bytes when they are not a file's (upload_source.c) */
typedef struct wxm_source {
  struct wxm_transfer *t;
  const char *data;               /* { data = bytes }: the string's bytes (kept on the stack) */
  int reader;                     /* { reader = f, size = N }: f's stack index; 0 for data */
  int chunk;                      /* stack index of the reader's last string */
  const char *rest;               /* what of that string libcurl has not taken yet */
  size_t rest_len;
  curl_off_t size, pos;
} wxm_source;

typedef struct wxm_transfer {
  lua_State *L;                   /* the state (or coroutine) of this very call */
  wxm_session *s;
  /* stack indexes of what the call keeps on the Lua stack while it runs */
  int tick;                       /* called at most ~10 times a second: progress, or a no-op */
  int progress;                   /* 1 when tick is the caller's progress function */
  int raised;                     /* the error a Lua callback raised, re-raised after cleanup */
  int keep;                       /* a value kept alive (on_file's chosen path) */
  double tick_at;                 /* monotonic time of tick's last call */
  curl_off_t progress_dl, progress_ul;   /* what progress was last told */
  enum wxm_abort aborted;
  size_t max_body;
  int over_cap;
  enum wxm_mode mode;
  wxm_writer write;               /* set by a download; NULL keeps the body in memory */
  int media_get;                  /* 1: media/get rules for "file or JSON"; 0: CDN rules */
  int follow;                     /* follow redirects (fetch) */
  int block_private;              /* refuse to connect to a private address (fetch) */
  char blocked[64];               /* the private address refused, as text */
  const char *fail_kind;          /* a failure a callback found, reported after perform (fail_msg) */
  /* an upload: the file, opened once, sent as exactly upload_size bytes */
  const char *upload_path;
  int upload_fd;
  curl_off_t upload_size, upload_pos;
  wxm_source source;               /* or its bytes from memory or a reader */
  /* a download to a file */
  const char *path;               /* the destination as the caller (or on_file) named it */
  char *target;                   /* malloc'd: the regular file a symlink at path points to */
  int on_file;                    /* stack index of the on_file function, 0 for none */
  int in_place;                   /* a FIFO or a character device: written straight into */
  int no_replace;                 /* never replace an existing file */
  int replace_mode;               /* -1: a new file; else the permission bits of the one replaced */
  wxm_temp tmp;
  int fd;                         /* where the body goes: tmp.fd, or the in-place destination */
  curl_off_t written;
  int has_cd;
  /* the large buffers last: wxm_transfer_init clears what comes before them */
  char fail_msg[1024];
  char cd[WXM_CD_MAX];            /* Content-Disposition of the final response */
} wxm_transfer;

void wxm_transfer_init (wxm_transfer *t, lua_State *L, wxm_session *s);
int wxm_table_arg (lua_State *L, int arg);
void wxm_transfer_options (lua_State *L, wxm_transfer *t, int opts, int allow_max_body);
int wxm_call (wxm_transfer *t, int nargs, int nresults);
CURLcode wxm_transfer_attach (wxm_transfer *t);
CURLcode wxm_perform (lua_State *L, wxm_transfer *t);
void wxm_transfer_end (wxm_transfer *t);
void wxm_defer (wxm_transfer *t, const char *kind, const char *fmt, ...) WXM_PRINTF(3, 4);
int wxm_push_failure (lua_State *L, wxm_transfer *t, CURLcode rc);
int wxm_push_body_result (lua_State *L, wxm_transfer *t);
int wxm_body_add (wxm_transfer *t, const char *p, size_t n);
long wxm_status (wxm_transfer *t);
const char *wxm_content_type (wxm_transfer *t);
void wxm_transfer_open (lua_State *L);   /* the no-op tick, in the registry */
void wxm_push_noop (lua_State *L);
/* }====== */

/* {====== download.c / upload.c / request.c: the session's methods ====== */
int wxm_s_get (lua_State *L);
int wxm_s_fetch (lua_State *L);
int wxm_s_upload (lua_State *L);
int wxm_s_request (lua_State *L);
/*
** The same calls in two halves, for the multi interface (multi.c): prepare reads the arguments
** from index 2 on (as the methods do), checks them and sets up t on s without performing it;
** it returns 0, or the count of the failure it pushed (nil, message, kind: nothing to perform).
** Everything t needs stays on the stack above the arguments (multi.c keeps that frame alive).
** finish turns the outcome of the performed transfer into the method's return values.
*/
int wxm_upload_prepare (lua_State *L, wxm_session *s, wxm_transfer *t);
int wxm_upload_finish (lua_State *L, wxm_transfer *t, CURLcode rc);
int wxm_get_prepare (lua_State *L, wxm_session *s, wxm_transfer *t);
int wxm_fetch_prepare (lua_State *L, wxm_session *s, wxm_transfer *t);
int wxm_download_finish (lua_State *L, wxm_transfer *t, CURLcode rc);
/* }====== */

/* {====== multi.c: many transfers at once on one thread (libcurl's multi interface) ====== */
void wxm_multi_open (lua_State *L);     /* core.multi */
/* }====== */

/* {====== upload_source.c: an upload's bytes from memory or from a Lua reader (t->source) ====== */
int wxm_source_open (lua_State *L, wxm_transfer *t, int arg, lua_Number checked);
CURLcode wxm_source_attach (curl_mimepart *part, wxm_transfer *t);
/* }====== */

/* {====== url.c ====== */
int wxm_url_join (wxm_buf *b, const char *base, const char *path);
int wxm_url_param (wxm_buf *b, CURL *curl, const char *key, const char *value, size_t vlen);
int wxm_url_terminate (wxm_buf *b);
/* }====== */

/* {====== address.c: is an address one that fetch must not reach? ====== */
struct sockaddr;
int wxm_address_private (const struct sockaddr *sa, char *text, size_t textsize);
int wxm_address_private_text (const char *ip);
/* }====== */

/* {====== errors.c: kinds and messages (nil, detail, kind) ====== */
int wxm_fail (lua_State *L, const char *kind, const char *fmt, ...) WXM_PRINTF(3, 4);
const char *wxm_kind_of (CURLcode rc);
void wxm_lower_first (char *s);
/* strerror(e) with a lowercase first letter, in the caller's buffer: wxm_strerror(e, buf, size) */
const char *wxm_strerror (int e, char *buf, size_t size);
#define WXM_STRERROR(e) wxm_strerror((e), (char[128]){ 0 }, 128)
/* }====== */

/* {====== helpers in their own files, registered into the module table ====== */
int wxm_open_read (const char *path);           /* fs.c: how the core opens a file it reads */
const char *wxm_what_it_is (mode_t mode);       /* fs.c: "a directory", ..., "not a regular file" */
void wxm_fs_open (lua_State *L);       /* stat, lstat, write_private */
void wxm_digest_open (lua_State *L);   /* sha256_file, sha256, sha1 (OpenSSL) */
void wxm_clock_open (lua_State *L);    /* now, time, sleep */
void wxm_lock_open (lua_State *L);     /* lock */
double wxm_monotonic (void);
void wxm_sleep (double seconds);       /* the whole time, even when a signal interrupts it */
/* }====== */

#endif
