#!/usr/bin/python3
"""The Python peer: requests (Debian's python3-requests) with one Session, the way a Python script
or SDK calls WeChat: files={'media': ...} for the upload, response.content for the get. Measured
from inside the process, like the wxmedia contender. Prints seconds.

  peer_python.py loop BASE_URL TYPE PATH N     N sequential uploads after a warm-up one
  peer_python.py upload BASE_URL TYPE PATH     one upload, token fetched first
  peer_python.py get BASE_URL MEDIA_ID OUT     one get, token fetched first
"""
import os
import re
import sys
import time

import requests

APPID = "wx1234567890abcdef"
SECRET = "0123456789abcdef0123456789abcdef"


def fail(text):
    # keep tokens and the secret out of the output
    sys.stderr.write("peer_python: " + re.sub(r"(access_token|secret)=[^&\s\"']+", r"\1=…", str(text)) + "\n")
    sys.exit(1)


def token(session, base):
    r = session.get(base + "/cgi-bin/token", params={
        "grant_type": "client_credential", "appid": APPID, "secret": SECRET})
    doc = r.json()
    if "access_token" not in doc:
        fail(doc)
    return doc["access_token"]


def upload(session, base, tok, mtype, path):
    with open(path, "rb") as f:
        r = session.post(base + "/cgi-bin/media/upload", params={"access_token": tok, "type": mtype},
                         files={"media": (os.path.basename(path), f, "application/octet-stream")})
    doc = r.json()
    if "media_id" not in doc:
        fail(doc)
    return doc


def main():
    mode, base = sys.argv[1], sys.argv[2]
    session = requests.Session()
    tok = token(session, base)
    if mode == "loop":
        mtype, path, n = sys.argv[3], sys.argv[4], int(sys.argv[5])
        upload(session, base, tok, mtype, path)
        t0 = time.monotonic()
        for _ in range(n):
            upload(session, base, tok, mtype, path)
        print("%.6f" % (time.monotonic() - t0))
    elif mode == "upload":
        mtype, path = sys.argv[3], sys.argv[4]
        t0 = time.monotonic()
        upload(session, base, tok, mtype, path)
        print("%.6f" % (time.monotonic() - t0))
    elif mode == "get":
        media_id, out = sys.argv[3], sys.argv[4]
        t0 = time.monotonic()
        r = session.get(base + "/cgi-bin/media/get", params={"access_token": tok, "media_id": media_id})
        if r.status_code != 200 or "json" in r.headers.get("Content-Type", "") or r.content[:1] == b"{":
            fail("not a file: %d" % r.status_code)
        with open(out, "wb") as f:
            f.write(r.content)
        print("%.6f" % (time.monotonic() - t0))
    else:
        fail("usage: peer_python.py loop|upload|get BASE_URL ...")


main()
