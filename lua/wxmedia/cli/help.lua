-- The command's manual: `wxmedia --help` and `wxmedia help` print it whole; `wxmedia help COMMAND`
-- (or `wxmedia COMMAND --help`) prints that command's lines of SYNOPSIS and DESCRIPTION.
-- Plain Lua 5.1 syntax on purpose: LuaRocks installs the command for whichever Lua it builds for.
local table = table

local _M = {}

_M.text = [[
NAME
    wxmedia - upload and download WeChat temporary media, and send them

SYNOPSIS
    wxmedia [OPTIONS] upload TYPE FILE...
    wxmedia [OPTIONS] get MEDIA_ID [-o FILE]
    wxmedia [OPTIONS] send OPENID TYPE FILE
    wxmedia [OPTIONS] send OPENID text TEXT
    wxmedia [OPTIONS] token
    wxmedia help [COMMAND] | --help | --version

DESCRIPTION
    wxmedia talks to the WeChat Official Account temporary media API
    (cgi-bin/media/upload and cgi-bin/media/get) and sends customer-
    service messages (cgi-bin/message/custom/send). It fetches and
    caches the access_token itself, retries what is worth retrying, and
    checks every file before sending it.

    upload TYPE FILE...
        Uploads each FILE as TYPE: image (JPEG, PNG, GIF), voice (AMR,
        MP3), video (MP4) or thumb (JPEG). The format is read from the
        file's content, not its name. With one FILE, prints its media_id;
        with several, prints "MEDIA_ID  FILE" for each, in order. Every
        FILE is tried even when an earlier one fails. Several FILEs go
        up {default_parallel} at a time (--parallel N). A FILE of - is standard input,
        read to its end into a private temp file first (WeChat needs the
        length before the bytes); the name sent to WeChat then comes from
        the content ("media.jpg").

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
        folder, or MEDIA_ID with an extension for the content type. That
        name is chosen when WeChat answers, before the body comes: an
        existing file (or link, or anything else) of that name is never
        replaced, and then nothing is downloaded. A MEDIA_ID may begin
        with '-'.

    get MEDIA_ID -o FILE
        Writes FILE, replacing it if it exists, only once the whole
        medium has arrived: a failure leaves FILE as it was. A FIFO or a
        device (/dev/null) is written into as it comes.

    get MEDIA_ID -o -
        Writes the medium to standard output (not to a terminal), only
        once it has arrived whole: a failure writes nothing there. It is
        kept meanwhile in a private temp folder under $TMPDIR, which is
        removed however the command ends (a closed pipe, a signal).

    send OPENID TYPE FILE
        Uploads FILE as TYPE (image, voice or video), as upload does,
        then sends it to the user OPENID as a customer-service message,
        and prints its media_id (followed by "reused" or "uploaded" with
        --reuse, which does not send a FILE uploaded before again). The
        media_id is printed even when the message then fails (with
        --reuse, trying again uploads nothing). FILE may be - (standard
        input). WeChat delivers a message only to a user who
        wrote to the account in the last 48 hours (errcode 45015), and
        at most 5 per message of theirs (45047); a failed message is not
        retried once it may have reached WeChat (it could arrive twice).

    send OPENID text TEXT
        Sends the user OPENID the text TEXT; prints nothing. A TEXT
        beginning with - goes after --.

    token
        Prints the access_token. This is the only command that ever
        prints a token; errors and other output never contain one.

    help [COMMAND]
        Prints this text, or the part of it about COMMAND.

    Media stay on WeChat's servers for 3 days. Text that comes from a
    server (a media_id, a file name, an error message) is printed as
    printable ASCII only: any other byte shows as \xHH.

OPTIONS
    --appid APPID        the account's AppID (instead of WECHAT_APPID)
    --secret-file FILE   read the AppSecret from the first line of FILE
                         (instead of WECHAT_APPSECRET; there is no option
                         taking the secret itself, as other users of the
                         machine can read command lines)
    --base-url URL       the API's address, with its scheme (default
                         {default_base_url})
    --allow-http         allow a plain http:// base URL to a machine that is
                         not loopback or private (the secret and tokens
                         then cross the network in clear)
    --token-api API      stable (the default: every process shares one
                         token) or classic (cgi-bin/token)
    --retries N          retries after a network failure, HTTP 5xx/429 or
                         a busy server (default {default_retries})
    --timeout SECONDS    give up on a transfer after this long
    -o, --output FILE    get: write to FILE (replacing it); - for stdout
    --json               print one JSON object per line, for scripts; a
                         failed item gives {"file" or "media_id", "error":
                         {"message", "kind", "errcode"}}; warnings and
                         errors still go to stderr
    --reuse              upload, send: reuse media_ids recorded in the
                         store
    --parallel N         upload: send N files at once (default {default_parallel} when
                         more than one file is given; not with --reuse)
    --store FILE         keep access_tokens (and --reuse records) in FILE,
                         shared by every run (default with --reuse:
                         $XDG_CACHE_HOME/wxmedia/store.json, else
                         ~/.cache/wxmedia/store.json, in a folder made
                         private); without it nothing is written to disk
    --no-progress        never draw a progress bar (one is drawn on
                         stderr, with the speed and the time left, for
                         transfers over 1 MB when stderr is a terminal,
                         and stdout too unless it is get's -o -)
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
    TMPDIR
        where get -o - and upload - keep their private temp folder
        (default /tmp)

EXIT STATUS
    0   success
    1   any other failure
    2   bad input: a usage error, no credentials, a bad base URL, a file
        that cannot be read or sent as TYPE, a destination that exists
        (get without -o) or cannot be one (a directory)
    3   WeChat refused: an errcode from the API (for send: 45015, the
        user has not written in 48 hours; 45047, too many messages;
        40003, not a user of the account), or bad credentials
    4   network failure: no connection, timeout, TLS, an interrupted
        transfer, an HTTP error status
    5   the output cannot be written: standard output (a full disk, a
        closed pipe when SIGPIPE is ignored) or the destination file (a
        full disk, no permission); the transfer itself may have worked
    130 interrupted (Ctrl-C); a partial download is never left behind
    A SIGTERM, SIGHUP or SIGPIPE (the reader of -o - went away) ends
    the command as it ends any program (128 + the signal's number in a
    shell), with no temp file left behind. With several FILEs, the
    status is that of the first failure.

EXAMPLES
    export WECHAT_APPID=wx1234567890abcdef
    read -rs WECHAT_APPSECRET && export WECHAT_APPSECRET
    id=$(wxmedia upload image photo.jpg)
    wxmedia get "$id" -o copy.jpg
    wxmedia get "$id" -o - | identify -
    convert logo.svg jpg:- | wxmedia upload thumb -
    wxmedia --json upload voice a.amr b.mp3 | jq -r .media_id
    wxmedia send --reuse "$openid" image welcome.jpg
    wxmedia send "$openid" text "Your report is ready"
    read -r id how < <(wxmedia upload --reuse image welcome.jpg)
    curl "https://api.weixin.qq.com/cgi-bin/...?access_token=$(wxmedia token)"
]]

-- The SYNOPSIS and DESCRIPTION lines about one command: its synopsis lines, then each entry of
-- DESCRIPTION whose first line names it (an entry runs to the next line indented 4 spaces).
-- The defaults the manual names, asked of their owners.
local facts = {
  default_base_url = require("wxmedia.transport").default_base_url() or "WeChat's API",
  default_retries = require("wxmedia.retry").DEFAULT_RETRIES,
  default_parallel = require("wxmedia.many").DEFAULT_CONCURRENCY,
}
_M.text = _M.text:gsub("{([%w_]+)}", function(name)
  return facts[name] ~= nil and tostring(facts[name]) or nil
end)

function _M.topic(command)
  local out, section, inside = {}, nil, false
  for line in _M.text:gmatch("([^\n]*)\n") do
    if line:match("^%u") then
      section = line
    elseif section == "SYNOPSIS" and (line:find("^    wxmedia %[OPTIONS%] " .. command .. "%f[^%w]")
        or line:find("^    wxmedia " .. command .. "%f[^%w]")) then
      out[#out + 1] = line
    elseif section == "DESCRIPTION" then
      if line:match("^    %S") then
        inside = line:find("^    " .. command .. "%f[^%w]") ~= nil
        if inside then out[#out + 1] = "" end
      end
      if inside and line ~= "" then out[#out + 1] = line end
    end
  end
  out[#out + 1] = ""
  out[#out + 1] = "Options, environment and exit statuses: wxmedia --help"
  return table.concat(out, "\n") .. "\n"
end

return _M
