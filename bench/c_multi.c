/*
** c_multi: the transport's limit for many uploads at once, the reference of upload_many. N uploads
** of one file on libcurl's multi interface, C at a time on C easy handles (so C keep-alive
** connections), one thread: each upload a multipart/form-data POST with one part "media" streamed
** from the file, as c_loop.c sends it, with nothing around it. Prints the seconds the N uploads
** took (monotonic clock), nothing else.
**
** usage: c_multi UPLOAD_URL FILE N C [FILENAME]
**   UPLOAD_URL is the full .../cgi-bin/media/upload?access_token=...&type=... URL; it is never printed.
** Exits 1 when an upload fails or answers anything but HTTP 200 with a media_id.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "c_common.h"

#define MAX_C 64

struct handle {
  CURL *curl;
  curl_mime *mime;
  struct answer answer;     /* small JSON, kept to check that it holds a media_id */
};

/* a new form per upload, as any caller uploading a different file each time must build */
static void start (CURLM *multi, struct handle *h, const char *path, const char *filename) {
  curl_mimepart *part;
  h->mime = curl_mime_init(h->curl);
  part = curl_mime_addpart(h->mime);
  curl_mime_name(part, "media");
  curl_mime_filedata(part, path);
  curl_mime_filename(part, filename);
  curl_mime_type(part, "image/jpeg");
  curl_easy_setopt(h->curl, CURLOPT_MIMEPOST, h->mime);
  answer_reset(&h->answer);
  curl_multi_add_handle(multi, h->curl);
}

int main (int argc, char **argv) {
  const char *url, *path, *filename;
  long n, c, started = 0, done = 0, i;
  struct handle handles[MAX_C];
  CURLM *multi;
  double t0;

  if (argc < 5) {
    fprintf(stderr, "usage: c_multi UPLOAD_URL FILE N C [FILENAME]\n");
    return 2;
  }
  url = argv[1];
  path = argv[2];
  n = strtol(argv[3], NULL, 10);
  c = strtol(argv[4], NULL, 10);
  filename = argc > 5 ? argv[5] : "media.jpg";
  if (c < 1 || c > MAX_C) return 2;

  curl_global_init(CURL_GLOBAL_DEFAULT);
  multi = curl_multi_init();
  for (i = 0; i < c; i++) {
    struct handle *h = &handles[i];
    h->curl = curl_easy_init();
    if (h->curl == NULL) return 1;
    curl_easy_setopt(h->curl, CURLOPT_URL, url);
    curl_easy_setopt(h->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, keep_answer);
    curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, (void *)&h->answer);
    curl_easy_setopt(h->curl, CURLOPT_PRIVATE, (void *)h);
  }

  t0 = now();
  for (i = 0; i < c && started < n; i++, started++) start(multi, &handles[i], path, filename);
  while (done < n) {
    int running, left;
    CURLMsg *msg;
    curl_multi_perform(multi, &running);
    while ((msg = curl_multi_info_read(multi, &left)) != NULL) {
      struct handle *h;
      long status = 0;
      if (msg->msg != CURLMSG_DONE) continue;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&h);
      curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, &status);
      curl_multi_remove_handle(multi, h->curl);
      curl_easy_setopt(h->curl, CURLOPT_MIMEPOST, (curl_mime *)NULL);
      curl_mime_free(h->mime);
      done++;
      if (msg->data.result != CURLE_OK || status != 200 || strstr(h->answer.data, "media_id") == NULL) {
        fprintf(stderr, "c_multi: upload %ld failed: %s, HTTP %ld\n", done,
                curl_easy_strerror(msg->data.result), status);
        return 1;
      }
      if (started < n) {
        start(multi, h, path, filename);
        started++;
      }
    }
    if (done < n) curl_multi_poll(multi, NULL, 0, 1000, NULL);
  }
  printf("%.6f\n", now() - t0);
  for (i = 0; i < c; i++) curl_easy_cleanup(handles[i].curl);
  curl_multi_cleanup(multi);
  curl_global_cleanup();
  return 0;
}
