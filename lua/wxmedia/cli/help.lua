-- The text of `wxmedia --help`: the command's manual.
return [[
NAME
    wxmedia - upload and download WeChat temporary media

SYNOPSIS
    wxmedia [OPTIONS] upload TYPE FILE...
    wxmedia [OPTIONS] get MEDIA_ID [-o FILE]
    wxmedia [OPTIONS] token
    wxmedia --help | --version

DESCRIPTION
    wxmedia talks to the WeChat Official Account temporary media API
    (cgi-bin/media/upload and cgi-bin/media/get). It fetches and caches
    the access_token itself, retries what is worth retrying, and checks
    every file before sending it.

    upload TYPE FILE...
        Uploads each FILE as TYPE: image (JPEG, PNG, GIF), voice (AMR,
        MP3), video (MP4) or thumb (JPEG). The format is read from the
        file's content, not its name. With one FILE, prints its media_id;
        with several, prints "MEDIA_ID  FILE" for each, in order. Every
        FILE is tried even when an earlier one fails. Several FILEs go
        up 4 at a time (--parallel N).

    upload --reuse TYPE FILE...
        The same, but a file whose content was uploaded before, and whose
        media_id has at least 6 more hours to live, is not sent again:
        its recorded media_id is printed. Each media_id is followed by
        "reused" or "uploaded" ("MEDIA_ID  reused  FILE" with several
        FILEs). The records, and the access_token, are kept in the
        --store file.

    get MEDIA_ID
        Downloads a medium (a video through the URL WeChat answers with)
        and prints the name of the file written. Without -o the name is
        the one WeChat gives, reduced to a plain file name in the current
        folder, or MEDIA_ID with an extension for the content type; an
        existing file of that name is never overwritten. A MEDIA_ID may
        begin with '-'.

    token
        Prints the access_token. This is the only command that ever
        prints a token; errors and other output never contain one.

    Media stay on WeChat's servers for 3 days.

OPTIONS
    --appid APPID        the account's AppID (instead of WECHAT_APPID)
    --secret-file FILE   read the AppSecret from the first line of FILE
                         (instead of WECHAT_APPSECRET; there is no option
                         taking the secret itself, as other users of the
                         machine can read command lines)
    --base-url URL       the API's address (default
                         https://api.weixin.qq.com)
    --token-api API      stable (the default: every process shares one
                         token) or classic (cgi-bin/token)
    --retries N          retries after a network failure, HTTP 5xx/429 or
                         a busy server (default 3)
    --timeout SECONDS    give up on a transfer after this long
    -o, --output FILE    get: write to FILE (replacing it); - for stdout
    --json               print one JSON object per line, for scripts; a
                         failed item gives {"file" or "media_id", "error":
                         {"message", "kind", "errcode"}}
    --reuse              upload: reuse media_ids recorded in the store
    --parallel N         upload: send N files at once (default 4 when
                         more than one file is given; not with --reuse)
    --store FILE         keep access_tokens (and --reuse records) in FILE,
                         shared by every run (default with --reuse:
                         $XDG_CACHE_HOME/wxmedia/store.json, else
                         ~/.cache/wxmedia/store.json, in a folder made
                         private); without it nothing is written to disk
    --no-progress        never draw a progress bar (one is drawn on
                         stderr for transfers over 1 MB when both stdout
                         and stderr are terminals)
    -h, --help           print this text
    --version            print the version

ENVIRONMENT
    WECHAT_APPID, WECHAT_APPSECRET
        the account's credentials; the command fetches tokens itself
    WECHAT_ACCESS_TOKEN
        a token got elsewhere, used when no AppID and AppSecret are
        given; it is never refreshed
    WXMEDIA_BASE_URL
        the API's address, as --base-url
    XDG_CACHE_HOME, HOME
        where --reuse keeps its store when --store is not given

EXIT STATUS
    0   success
    1   any other failure
    2   bad input: a usage error, no credentials, a file that cannot be
        read, written or sent as TYPE
    3   WeChat refused: an errcode from the API, or bad credentials
    4   network failure: no connection, timeout, TLS, an interrupted
        transfer, an HTTP error status
    130 interrupted (Ctrl-C); a partial download is never left behind
    With several FILEs, the status is that of the first failure.

EXAMPLES
    export WECHAT_APPID=wx1234567890abcdef
    read -rs WECHAT_APPSECRET && export WECHAT_APPSECRET
    id=$(wxmedia upload image photo.jpg)
    wxmedia get "$id" -o copy.jpg
    wxmedia get "$id" -o - | identify -
    wxmedia --json upload voice a.amr b.mp3 | jq -r .media_id
    read -r id how < <(wxmedia upload --reuse image welcome.jpg)
    curl "https://api.weixin.qq.com/cgi-bin/...?access_token=$(wxmedia token)"
]]
