/*
** c_loop: the transport's limit for benchmark 1. N uploads of one file on ONE libcurl easy handle
** (so one keep-alive connection), each a multipart/form-data POST with one part "media" streamed
** from the file, exactly what wxmedia.core sends, with nothing around it: no Lua, no JSON decoding,
** no token logic. Prints the seconds the N uploads took (monotonic clock), nothing else.
**
** usage: c_loop UPLOAD_URL FILE N [FILENAME]
**   UPLOAD_URL is the full .../cgi-bin/media/upload?access_token=...&type=... URL; it is never printed.
** Exits 1 when an upload fails or answers anything but HTTP 200 with a media_id.
*/
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "c_common.h"

int main (int argc, char **argv) {
  const char *url, *path, *filename;
  long n, i, status = 0;
  CURL *curl;
  struct answer a;
  double t0;

  if (argc < 4) {
    fprintf(stderr, "usage: c_loop UPLOAD_URL FILE N [FILENAME]\n");
    return 2;
  }
  url = argv[1];
  path = argv[2];
  n = strtol(argv[3], NULL, 10);
  filename = argc > 4 ? argv[4] : "media.jpg";

  curl_global_init(CURL_GLOBAL_DEFAULT);
  curl = curl_easy_init();
  if (curl == NULL) return 1;
  curl_easy_setopt(curl, CURLOPT_URL, url);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep_answer);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, (void *)&a);

  t0 = now();
  for (i = 0; i < n; i++) {
    /* a new form per upload, as any caller uploading a different file each time must build */
    curl_mime *mime = curl_mime_init(curl);
    curl_mimepart *part = curl_mime_addpart(mime);
    CURLcode rc;
    curl_mime_name(part, "media");
    curl_mime_filedata(part, path);
    curl_mime_filename(part, filename);
    curl_mime_type(part, "image/jpeg");
    curl_easy_setopt(curl, CURLOPT_MIMEPOST, mime);
    answer_reset(&a);
    rc = curl_easy_perform(curl);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_setopt(curl, CURLOPT_MIMEPOST, (curl_mime *)NULL);
    curl_mime_free(mime);
    if (rc != CURLE_OK || status != 200 || strstr(a.data, "media_id") == NULL) {
      fprintf(stderr, "c_loop: upload %ld failed: %s, HTTP %ld\n", i + 1, curl_easy_strerror(rc), status);
      return 1;
    }
  }
  printf("%.6f\n", now() - t0);
  curl_easy_cleanup(curl);
  curl_global_cleanup();
  return 0;
}
