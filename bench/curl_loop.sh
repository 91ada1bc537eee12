#!/bin/bash
# What a shell script does: one `curl -F` process per file. Prints the seconds N uploads took,
# process start-ups included (that is the cost this way of working pays).
#   curl_loop.sh UPLOAD_URL FILE N FILENAME
# UPLOAD_URL carries the access_token: it is never printed.
set -euo pipefail
url=$1 file=$2 n=$3 name=$4
# a warm-up upload (page cache, the emulator's worker), as every contender gets
curl -s -S -f -o /dev/null -F "media=@$file;filename=$name" "$url"
t0=$EPOCHREALTIME
for ((i = 0; i < n; i++)); do
  out=$(curl -s -S -f -F "media=@$file;filename=$name" "$url")
  [[ $out == *media_id* ]] || { echo "curl_loop: upload $((i + 1)) failed" >&2; exit 1; }
done
t1=$EPOCHREALTIME
echo "$t0 $t1" | awk '{ printf "%.6f\n", $2 - $1 }'
