#!/bin/bash
# The fair reference for a durable download: the curl command, then an fsync of the file it wrote
# (coreutils' `sync FILE`), as a script that wants the file on disk before it goes on must do.
# Prints curl's own %{time_total} plus the wall time of the sync, in seconds.
#   curl_fsync.sh OUT URL
# URL carries the access_token: it is never printed.
set -euo pipefail
out=$1 url=$2
t=$(curl -s -S -f -o "$out" -w '%{time_total}' "$url")
s0=$EPOCHREALTIME
sync "$out"
s1=$EPOCHREALTIME
awk -v t="$t" -v a="$s0" -v b="$s1" 'BEGIN { printf "%.6f\n", t + (b - a) }'
