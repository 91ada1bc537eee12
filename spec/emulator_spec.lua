-- The local WeChat emulator (emulator/), driven with curl only: endpoints, WeChat's errors and their
-- order, token rules, switches, faults, the control API, strictness and concurrency.
local helper = require "helper"
local cjson = require "cjson.safe"

local q = helper.shell_quote
local APPID, SECRET, APPID2, SECRET2 = helper.APPID, helper.SECRET, helper.APPID2, helper.SECRET2
local JSON_TYPE = "application/json; encoding=utf-8"

local emu, tmp

-- One HTTP exchange with curl: returns { status, body, headers (lower-cased names), raw_headers,
-- exit (curl's exit code), json (decoded body or nil) }.
local function http(args)
  local hfile, bfile = tmp .. "/headers", tmp .. "/body"
  os.remove(hfile)
  os.remove(bfile)
  local out = helper.sh("curl -g -s --max-time 20 -D " .. q(hfile) .. " -o " .. q(bfile) .. " " .. args
    .. " 2>/dev/null; echo \"exit=$?\"")
  local res = { exit = tonumber(out:match("exit=(%d+)")), body = helper.read(bfile) or "", headers = {} }
  res.raw_headers = helper.read(hfile) or ""
  -- the last header block (after a 100 Continue)
  for block in res.raw_headers:gmatch("(HTTP/.-\r\n)\r\n") do
    res.status = tonumber(block:match("^HTTP/%S+ (%d+)"))
    res.headers = {}
    for name, value in block:gmatch("\n([^:\r\n]+):%s*([^\r\n]*)") do res.headers[name:lower()] = value end
  end
  res.json = cjson.decode(res.body)
  return res
end

local function url(path) return q(emu.base_url .. path) end

local function token_url(appid, secret, grant)
  return url("/cgi-bin/token?grant_type=" .. (grant or "client_credential") .. "&appid=" .. appid
    .. "&secret=" .. secret)
end

local function stable(body)
  return http("-X POST -H 'Content-Type: application/json' --data-binary " .. q(cjson.encode(body))
    .. " " .. url("/cgi-bin/stable_token"))
end

local function stable_token(appid, secret, force)
  return stable { grant_type = "client_credential", appid = appid or APPID, secret = secret or SECRET,
    force_refresh = force or false }
end

-- Uploads a file: form is extra curl -F arguments (already quoted) or nil.
local function upload(token, mtype, path, filename, form)
  local query = "/cgi-bin/media/upload?access_token=" .. token .. (mtype and ("&type=" .. mtype) or "")
  return http("-F " .. q("media=@" .. path .. ";filename=" .. (filename or path:match("[^/]+$")))
    .. " " .. (form or "") .. " " .. url(query))
end

local function get(token, media_id, path)
  return http(url((path or "/cgi-bin/media/get") .. "?access_token=" .. token .. "&media_id=" .. media_id))
end

-- A raw request body with a given Content-Type.
local function post_raw(path, content_type, body)
  local file = helper.write(tmp .. "/raw-body", body)
  return http("-X POST -H " .. q("Content-Type: " .. content_type) .. " --data-binary @" .. q(file)
    .. " " .. url(path))
end

local function errcode(res)
  return res.json and res.json.errcode
end

local function assert_wechat_error(res, code)
  assert.are.equal(200, res.status)
  assert.are.equal(JSON_TYPE, res.headers["content-type"])
  assert.are.equal(code, errcode(res), res.body)
  assert.is_string(res.json.errmsg)
end

local function media_id_of(res)
  return res.json and (res.json.media_id or res.json.thumb_media_id)
end

-- Runs the start script; returns its output and whether it exited 0.
local function script(args)
  return helper.sh(q(helper.root .. "/emulator/wxmedia-emulator") .. " " .. args .. " 2>&1")
end

-- Runs the start script with `env` (a shell prefix such as "LUA_PATH=x"); returns stdout, stderr, ok.
local function script_apart(args, env)
  local err = tmp .. "/script-stderr"
  local out, ok = helper.sh((env or "") .. " " .. q(helper.root .. "/emulator/wxmedia-emulator") .. " "
    .. args .. " 2>" .. q(err))
  return out, helper.read(err) or "", ok
end

-- A zombie is not alive (in a container, init may take a while to reap the daemon).
local function alive(pid)
  local stat = helper.read(("/proc/%d/stat"):format(tonumber(pid)))
  local state = stat and stat:match("^%d+ %b() (%a)")
  return state ~= nil and state ~= "Z" and state ~= "X"
end

describe("emulator #once", function()
  setup(function()
    tmp = helper.tmpdir()
    emu = helper.start_emulator()
  end)

  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(tmp)
  end)

  before_each(function()
    emu:reset()
  end)

  describe("start and stop", function()
    it("starts on a free port, prints one line, and stops leaving nothing running", function()
      local dir = tmp .. "/own"
      local out, ok = script("start --dir " .. q(dir))
      finally(function() script("stop --dir " .. q(dir)) end)
      assert.is_true(ok, out)
      local base, pid, printed_dir =
        out:match("^wxmedia emulator: base_url=(http://127%.0%.0%.1:%d+) pid=(%d+) dir=(%S+)\n$")
      assert.is_string(base, out)
      assert.are.equal(dir, printed_dir)
      assert.are.equal(pid, (helper.read(dir .. "/nginx.pid"):gsub("%s+$", "")))
      local port = tonumber(base:match(":(%d+)$"))
      assert.is_true(port >= 20000 and port <= 60999)
      local res = http(q(base .. "/cgi-bin/token?grant_type=client_credential&appid=" .. APPID
        .. "&secret=" .. SECRET))
      assert.is_string(res.json.access_token)
      local _, stopped = script("stop --dir " .. q(dir))
      assert.is_true(stopped)
      assert.is_false(alive(pid))
      -- stopping what is not running is fine
      local _, again = script("stop --dir " .. q(dir))
      assert.is_true(again)
    end)

    it("answers JSON with --json, takes --port, and fails with nginx's message on a busy port", function()
      local port = tonumber(emu.base_url:match(":(%d+)$"))
      local out, ok = script("start --json --dir " .. q(tmp .. "/busy") .. " --port " .. port)
      assert.is_false(ok)
      assert.matches("Address already in use", out)
      out, ok = script("start --json --dir " .. q(tmp .. "/json"))
      finally(function() script("stop --dir " .. q(tmp .. "/json")) end)
      assert.is_true(ok, out)
      local info = cjson.decode(out)
      assert.matches("^http://127%.0%.0%.1:%d+$", info.base_url)
      assert.are.equal(tmp .. "/json", info.dir)
      assert.is_true(alive(info.pid))
      script("stop --dir " .. q(tmp .. "/json"))
      assert.is_false(alive(info.pid))
    end)

    it("reports the emulator already running from its folder instead of starting another", function()
      local dir = tmp .. "/again"
      local first, _, ok = script_apart("start --json --dir " .. q(dir))
      finally(function() script("stop --dir " .. q(dir)) end)
      assert.is_true(ok, first)
      local info = cjson.decode(first)
      -- some state: a token and a stored medium
      local tok = http(q(info.base_url .. "/cgi-bin/token?grant_type=client_credential&appid=" .. APPID
        .. "&secret=" .. SECRET)).json.access_token
      local up = http("-F " .. q("media=@" .. helper.fixture("image.png")) .. " "
        .. q(info.base_url .. "/cgi-bin/media/upload?type=image&access_token=" .. tok))
      local id = assert(media_id_of(up), up.body)
      -- again, even with other options: the same server is reported, kept as it was
      local out, err
      out, err, ok = script_apart("start --json --workers 2 --dir " .. q(dir))
      assert.is_true(ok, err)
      assert.same(info, cjson.decode(out))
      assert.matches("^wxmedia%-emulator: already running from " .. dir:gsub("%p", "%%%0") .. " %(pid "
        .. ("%d"):format(info.pid) .. "%), not restarted", err)
      out, err, ok = script_apart("start --dir " .. q(dir))
      assert.is_true(ok, err)
      assert.are.equal(("wxmedia emulator: base_url=%s pid=%d dir=%s\n"):format(info.base_url, info.pid, dir),
        out)
      assert.matches("already running", err)
      assert.is_true(alive(info.pid))
      local got = http(q(info.base_url .. "/cgi-bin/media/get?access_token=" .. tok .. "&media_id=" .. id))
      assert.are.equal(helper.read(helper.fixture("image.png")), got.body)
      -- once stopped, start starts afresh
      script("stop --dir " .. q(dir))
      out, err, ok = script_apart("start --json --dir " .. q(dir))
      assert.is_true(ok, err)
      assert.are.equal("", err)
      assert.are_not.equal(info.pid, cjson.decode(out).pid)
    end)

    it("sets its own Lua paths whatever LUA_PATH and LUA_CPATH hold", function()
      -- as `eval "$(luarocks --lua-version=5.4 path)"` leaves them: LuaJIT cannot load 5.4's cjson.so
      local env = "LUA_PATH='/usr/share/lua/5.4/?.lua;;'"
        .. " LUA_CPATH='/usr/lib/x86_64-linux-gnu/lua/5.4/?.so;;' LUA_INIT='error(\"LUA_INIT ran\")'"
      local dir = tmp .. "/luapath"
      local out, err, ok = script_apart("start --json --dir " .. q(dir), env)
      finally(function() script("stop --dir " .. q(dir)) end)
      assert.is_true(ok, err)
      local info = cjson.decode(out)
      local res = http(q(info.base_url .. "/cgi-bin/token?grant_type=client_credential&appid=" .. APPID
        .. "&secret=" .. SECRET))
      assert.is_string(res.json.access_token)
    end)

    it("shows nginx's own message when nginx cannot start", function()
      local dir = tmp .. "/nomodules"
      local out, err, ok = script_apart("start --dir " .. q(dir), "NGINX_MODULES=/nonexistent")
      assert.is_false(ok)
      assert.are.equal("", out)
      assert.matches('^wxmedia%-emulator: nginx did not start: nginx: %[emerg%] dlopen%(%) "/nonexistent/',
        err)
      assert.is_nil(helper.read(dir .. "/nginx.pid"))
    end)

    it("refuses a bad config file with a message", function()
      local cfg = helper.write(tmp .. "/bad.json", '{"limits":{"image":-1}}')
      local out, ok = script("start --dir " .. q(tmp .. "/badcfg") .. " --config " .. q(cfg))
      assert.is_false(ok)
      assert.matches("limits.image", out)
      out, ok = script("start --dir " .. q(tmp .. "/badcfg") .. " --preset 1999")
      assert.is_false(ok)
      assert.matches("preset", out)
    end)

    it("works through make emulator and make emulator-stop", function()
      local dir = tmp .. "/make"
      local make = "make -s -C " .. q(helper.root)
      local out, ok = helper.sh(make .. " emulator EMULATOR_DIR=" .. q(dir) .. " 2>&1")
      finally(function() script("stop --dir " .. q(dir)) end)
      assert.is_true(ok, out)
      local pid = out:match("pid=(%d+)")
      assert.is_true(alive(pid))
      out, ok = helper.sh(make .. " emulator-stop EMULATOR_DIR=" .. q(dir) .. " 2>&1")
      assert.is_true(ok, out)
      assert.is_false(alive(pid))
    end)

    it("takes a config file and the 2014 preset, and several workers act as one server", function()
      local cfg = helper.write(tmp .. "/cfg.json", cjson.encode {
        apps = { { appid = "wxaaaaaaaaaaaaaaaa", secret = "s3cr3t" } },
        token_lifetime = 100,
        limits = { thumb = 1000 },
      })
      local dir = tmp .. "/two"
      local out, ok = script("start --json --workers 2 --preset 2014 --dir " .. q(dir)
        .. " --config " .. q(cfg))
      finally(function() script("stop --dir " .. q(dir)) end)
      assert.is_true(ok, out)
      local info = cjson.decode(out)
      local control = http(q(info.base_url .. "/__emulator/config"))
      assert.same({ image = 131072, voice = 262144, video = 1048576, thumb = 1000 }, control.json.limits)
      assert.are.equal(100, control.json.token_lifetime)
      local tok = http(q(info.base_url
        .. "/cgi-bin/token?grant_type=client_credential&appid=wxaaaaaaaaaaaaaaaa&secret=s3cr3t"))
      assert.are.equal(100, tok.json.expires_in)
      -- each curl is a new connection, spread over both workers: all share tokens and media
      local ids = {}
      for i = 1, 6 do
        local res = http("-F " .. q("media=@" .. helper.fixture("image.png")) .. " "
          .. q(info.base_url .. "/cgi-bin/media/upload?type=image&access_token=" .. tok.json.access_token))
        ids[i] = assert(media_id_of(res), res.body)
      end
      for i = 1, 6 do
        local res = http(q(info.base_url .. "/cgi-bin/media/get?access_token=" .. tok.json.access_token
          .. "&media_id=" .. ids[i]))
        assert.are.equal(helper.read(helper.fixture("image.png")), res.body)
      end
      local log = http(q(info.base_url .. "/__emulator/log")).json
      assert.are.equal(13, #log)
      script("stop --dir " .. q(dir))
      assert.is_false(alive(info.pid))
    end)
  end)

  describe("cgi-bin/token", function()
    it("issues a new token per call, the previous one valid 300 s more", function()
      local a = http(token_url(APPID, SECRET))
      assert.are.equal(JSON_TYPE, a.headers["content-type"])
      assert.matches("^86_[%w_%-]+$", a.json.access_token)
      assert.is_true(#a.json.access_token >= 100)
      assert.are.equal(7200, a.json.expires_in)
      local b = http(token_url(APPID, SECRET))
      assert.are_not.equal(a.json.access_token, b.json.access_token)
      local png = helper.fixture("image.png")
      assert.is_string(media_id_of(upload(a.json.access_token, "image", png)))
      emu:clock(299)
      assert.is_string(media_id_of(upload(a.json.access_token, "image", png)))
      emu:clock(2)
      assert_wechat_error(upload(a.json.access_token, "image", png), 40001)
      assert.is_string(media_id_of(upload(b.json.access_token, "image", png)))
      emu:clock(7200)
      assert_wechat_error(upload(b.json.access_token, "image", png), 42001)
    end)

    it("keeps accounts apart and checks appid, secret and grant_type in that order", function()
      local a = http(token_url(APPID, SECRET)).json.access_token
      local b = http(token_url(APPID2, SECRET2)).json.access_token
      local png = helper.fixture("image.png")
      assert.is_string(media_id_of(upload(a, "image", png)))
      assert.is_string(media_id_of(upload(b, "image", png)))
      assert_wechat_error(http(token_url("wx0000000000000000", "nope", "nope")), 40013)
      assert_wechat_error(http(token_url(APPID, SECRET2, "nope")), 40125)
      assert_wechat_error(http(token_url(APPID, SECRET, "authorization_code")), 40002)
      assert_wechat_error(http(url("/cgi-bin/token")), 40013)
    end)

    it("takes the token lifetime from the config", function()
      emu:config { token_lifetime = 60 }
      local res = http(token_url(APPID, SECRET))
      assert.are.equal(60, res.json.expires_in)
      emu:clock(61)
      assert_wechat_error(upload(res.json.access_token, "image", helper.fixture("image.png")), 42001)
    end)
  end)

  describe("cgi-bin/stable_token", function()
    it("answers the same token with its remaining life, isolated from the classic token", function()
      local a = stable_token()
      assert.are.equal(JSON_TYPE, a.headers["content-type"])
      assert.are.equal(7200, a.json.expires_in)
      emu:clock(1000)
      local classic = http(token_url(APPID, SECRET)).json.access_token
      local b = stable_token()
      assert.are.equal(a.json.access_token, b.json.access_token)
      assert.are.equal(6200, b.json.expires_in)
      assert.are_not.equal(classic, b.json.access_token)
      http(token_url(APPID, SECRET))
      -- the classic endpoint does not replace the stable token, nor the reverse
      local png = helper.fixture("image.png")
      assert.is_string(media_id_of(upload(a.json.access_token, "image", png)))
      assert.is_string(media_id_of(upload(classic, "image", png)))
      assert.are_not.equal(a.json.access_token, stable_token(APPID2, SECRET2).json.access_token)
    end)

    it("rotates in the last 300 s, the old token working to its end", function()
      local a = stable_token().json.access_token
      emu:clock(7200 - 301)
      assert.are.equal(a, stable_token().json.access_token)
      emu:clock(2)
      local b = stable_token()
      assert.are_not.equal(a, b.json.access_token)
      assert.are.equal(7200, b.json.expires_in)
      local png = helper.fixture("image.png")
      assert.is_string(media_id_of(upload(a, "image", png)))
      emu:clock(300)
      assert_wechat_error(upload(a, "image", png), 42001)
      assert.is_string(media_id_of(upload(b.json.access_token, "image", png)))
    end)

    it("force_refresh rotates at once, at most once per 30 s and 20 times a day (45009)", function()
      local a = stable_token().json.access_token
      local b = stable_token(nil, nil, true).json.access_token
      assert.are_not.equal(a, b)
      assert_wechat_error(upload(a, "image", helper.fixture("image.png")), 40001)
      local again = stable_token(nil, nil, true)
      assert_wechat_error(again, 45009)
      assert.matches("^reach max api daily quota limit", again.json.errmsg)
      -- 19 more, 30 s apart, in one curl run (--next) to keep the spec fast
      local force = q(cjson.encode {
        grant_type = "client_credential", appid = APPID, secret = SECRET, force_refresh = true })
      local args = {}
      for i = 2, 20 do
        args[#args + 1] = "--next -s -o /dev/null --data-binary '{\"advance\":30}' "
          .. url("/__emulator/clock")
        args[#args + 1] = ("--next -s -o %s --data-binary %s %s"):format(q(tmp .. "/force" .. i), force,
          url("/cgi-bin/stable_token"))
      end
      helper.sh("curl " .. table.concat(args, " "))
      for i = 2, 20 do
        local res = cjson.decode(helper.read(tmp .. "/force" .. i) or "")
        assert.is_string(res and res.access_token)
      end
      emu:clock(30)
      assert_wechat_error(stable_token(nil, nil, true), 45009)
      -- the normal mode still works, and the quota starts over the next day
      assert.is_string(stable_token().json.access_token)
      emu:clock(86400)
      assert.is_string(stable_token(nil, nil, true).json.access_token)
    end)

    it("answers WeChat's errors for bad requests", function()
      assert_wechat_error(http(url("/cgi-bin/stable_token")), 43002)
      assert_wechat_error(post_raw("/cgi-bin/stable_token", "application/json", "{not json"), 47001)
      assert_wechat_error(stable_token("wx0000000000000000", SECRET), 40013)
      assert_wechat_error(stable_token(APPID, SECRET2), 40125)
      assert_wechat_error(stable { appid = APPID, secret = SECRET }, 40002)
    end)
  end)

  describe("cgi-bin/media/upload", function()
    local token
    before_each(function() token = emu:token() end)

    it("stores every type and answers WeChat's success body", function()
      for _, c in ipairs {
        { "image", "image.jpg" }, { "image", "image.png" }, { "image", "image.gif" },
        { "voice", "voice.amr" }, { "voice", "voice.mp3" }, { "video", "video.mp4" },
      } do
        local res = upload(token, c[1], helper.fixture(c[2]))
        assert.are.equal(JSON_TYPE, res.headers["content-type"])
        assert.matches('^{"type":"' .. c[1] .. '","media_id":"[%w_%-]+","created_at":%d+,"item":%[%]}$',
          res.body)
        assert.are.equal(64, #res.json.media_id)
        assert.is_true(math.abs(res.json.created_at - os.time()) < 60)
      end
      local thumb = upload(token, "thumb", helper.fixture("thumb.jpg"))
      assert.matches('^{"type":"thumb","thumb_media_id":"[%w_%-]+","created_at":%d+,"item":%[%]}$',
        thumb.body)
      assert.is_nil(thumb.json.media_id)
    end)

    it("takes the type from a form field when the query has none", function()
      local res = upload(token, nil, helper.fixture("voice.amr"), nil, "-F type=voice")
      assert.are.equal("voice", res.json.type)
      res = http("-F type=thumb -F " .. q("media=@" .. helper.fixture("thumb.jpg"))
        .. " " .. url("/cgi-bin/media/upload?access_token=" .. token))
      assert.are.equal("thumb", res.json.type)
      assert_wechat_error(upload(token, nil, helper.fixture("voice.amr")), 40004)
    end)

    it("checks the token first: 41001, 40001, 40014, 42001", function()
      local png = helper.fixture("image.png")
      local no_token = http("-F " .. q("media=@" .. png) .. " " .. url("/cgi-bin/media/upload?type=image"))
      assert_wechat_error(no_token, 41001)
      assert_wechat_error(upload("86_unknownTOKENunknownTOKENunknownTOKEN", "bogus", png), 40001)
      assert_wechat_error(upload("not%20a%20token", "image", png), 40014)
      assert_wechat_error(upload(string.rep("A", 600), "image", png), 40014)
      emu:clock(7200)
      assert_wechat_error(upload(token, "bogus", png), 42001)
    end)

    it("then type (40004), part (41005), emptiness (44001), extension (40005), size (40006)", function()
      local png, empty = helper.fixture("image.png"), helper.write(tmp .. "/empty.jpg", "")
      assert_wechat_error(upload(token, "file", png), 40004)
      assert_wechat_error(upload(token, "Image", empty, "x.txt"), 40004)
      -- no part named media, or one without a filename (a plain field)
      local up = url("/cgi-bin/media/upload?type=image&access_token=" .. token)
      assert_wechat_error(http("-F " .. q("file=@" .. png) .. " " .. up), 41005)
      assert_wechat_error(http("-F media=abc " .. up), 41005)
      assert_wechat_error(upload(token, "image", empty, "empty.txt"), 44001)
      assert_wechat_error(upload(token, "image", png, "image"), 40005)
      assert_wechat_error(upload(token, "video", png, "image.png"), 40005)
      assert_wechat_error(upload(token, "thumb", png, "image.png"), 40005)
      assert_wechat_error(upload(token, "voice", helper.fixture("video.mp4")), 40005)
      emu:config { limits = { image = 100 } }
      assert_wechat_error(upload(token, "image", png, "big.png"), 40006)
      assert_wechat_error(upload(token, "image", png, "big.txt"), 40005)
      -- the part's Content-Type does not matter, the extension's case neither
      local res = http("-F " .. q("media=@" .. helper.fixture("thumb.jpg")
        .. ";filename=T.JPG;type=application/octet-stream")
        .. " " .. url("/cgi-bin/media/upload?type=thumb&access_token=" .. token))
      assert.is_string(res.json.thumb_media_id)
      local log = emu:requests("upload")
      assert.are.equal(12, #log)
      assert.are.equal("T.JPG", log[12].filename)
      assert.are.equal(40006, log[10].errcode)
    end)

    it("answers 412 to a chunked upload (no Content-Length), as WeChat's gateway does", function()
      local gif = helper.fixture("image.gif")
      local up = url("/cgi-bin/media/upload?type=image&access_token=" .. token)
      local res = http("-H 'Transfer-Encoding: chunked' -F " .. q("media=@" .. gif) .. " " .. up)
      assert.are.equal(412, res.status)
      assert.matches("412 Precondition Failed", res.body)
      assert.is_nil(res.json)
      assert.same({}, helper.ls(emu.dir .. "/storage"))
      -- the same file with its length goes through; the log has both
      assert.is_string(media_id_of(http("-F " .. q("media=@" .. gif) .. " " .. up)))
      local log = emu:requests("upload")
      assert.are.equal(2, #log)
      assert.are.equal(412, log[1].status)
      assert.is_nil(log[1].errcode)
    end)

    it("enforces the size limit of each type exactly", function()
      emu:config { limits = { voice = 2024 } }
      local at = helper.write(tmp .. "/at.mp3", ("\255\251"):rep(1012))
      local over = helper.write(tmp .. "/over.mp3", ("\255\251"):rep(1012) .. "x")
      assert.are.equal("voice", upload(token, "voice", at).json.type)
      assert_wechat_error(upload(token, "voice", over), 40006)
      -- the form's type, read after the media part, applies too
      assert_wechat_error(upload(token, nil, over, nil, "-F type=voice"), 40006)
    end)
  end)

  describe("cgi-bin/media/get", function()
    local token
    before_each(function() token = emu:token() end)

    it("answers the stored bytes with WeChat's headers", function()
      for _, c in ipairs {
        { "image", "image.jpg", "image/jpeg", "jpg" }, { "image", "image.png", "image/png", "png" },
        { "image", "image.gif", "image/gif", "gif" }, { "voice", "voice.amr", "audio/amr", "amr" },
        { "voice", "voice.mp3", "audio/mpeg", "mp3" }, { "thumb", "thumb.jpg", "image/jpeg", "jpg" },
      } do
        local bytes = helper.read(helper.fixture(c[2]))
        local id = media_id_of(upload(token, c[1], helper.fixture(c[2])))
        local res = get(token, id)
        assert.are.equal(200, res.status)
        assert.are.equal(bytes, res.body)
        assert.are.equal(c[3], res.headers["content-type"])
        assert.are.equal(tostring(#bytes), res.headers["content-length"])
        assert.are.equal("no-cache, must-revalidate", res.headers["cache-control"])
        -- WeChat's spelling, lower-case d
        local name = id:gsub("%-", "%%-") .. "%." .. c[4]
        assert.matches('\r\nContent%-disposition: attachment; filename="' .. name .. '"\r\n', res.raw_headers)
      end
    end)

    it("names the format by content, also under another extension", function()
      local id = media_id_of(upload(token, "image", helper.fixture("image.png"), "photo.jpg"))
      assert.are.equal("image/png", get(token, id).headers["content-type"])
    end)

    it("tolerates POST", function()
      local id = media_id_of(upload(token, "image", helper.fixture("image.gif")))
      local res = http("-X POST " .. url("/cgi-bin/media/get?access_token=" .. token .. "&media_id=" .. id))
      assert.are.equal(helper.read(helper.fixture("image.gif")), res.body)
      res = http("--data-binary " .. q(cjson.encode { media_id = id }) .. " "
        .. url("/cgi-bin/media/get?access_token=" .. token))
      assert.are.equal(helper.read(helper.fixture("image.gif")), res.body)
    end)

    it("answers 41006 without media_id and 40007 for unknown, other appid's and expired media", function()
      local id = media_id_of(upload(token, "image", helper.fixture("image.jpg")))
      assert_wechat_error(http(url("/cgi-bin/media/get?access_token=" .. token)), 41006)
      assert_wechat_error(get(token, ""), 41006)
      assert_wechat_error(get(token, ("x"):rep(64)), 40007)
      assert_wechat_error(get(token, "short"), 40007)
      assert_wechat_error(get(emu:token(APPID2, SECRET2), id), 40007)
      assert_wechat_error(get("86_nottoken", id), 40001)
      emu:clock(259200 - 10)
      token = emu:token()
      assert.are.equal(200, get(token, id).status)
      assert.is_nil(get(token, id).json)
      emu:clock(10)
      token = emu:token()
      assert_wechat_error(get(token, id), 40007)
    end)

    it("takes the media lifetime from the config", function()
      emu:config { media_ttl = 100, token_lifetime = 100000 }
      local id = media_id_of(upload(token, "image", helper.fixture("image.jpg")))
      token = emu:token()
      emu:clock(101)
      assert_wechat_error(get(token, id), 40007)
    end)

    it("answers a video with a video_url that serves the bytes without a token, like a CDN", function()
      local id = media_id_of(upload(token, "video", helper.fixture("video.mp4")))
      local res = get(token, id)
      assert.are.equal("text/plain", res.headers["content-type"])
      assert.is_nil(res.headers["content-disposition"])
      local video_url = res.json.video_url
      assert.matches('^{"video_url":"http://[^\\"]+"}$', res.body)   -- slashes not escaped
      assert.matches("^http://127%.0%.0%.1:%d+/", video_url)
      assert.is_nil(video_url:find(token, 1, true))
      local cdn = http(q(video_url))
      assert.are.equal(200, cdn.status)
      assert.are.equal("video/mp4", cdn.headers["content-type"])
      assert.is_nil(cdn.headers["content-disposition"])
      assert.are.equal(helper.read(helper.fixture("video.mp4")), cdn.body)
      assert.are.equal(tostring(#cdn.body), cdn.headers["content-length"])
      assert.are.equal(1, #emu:requests("video"))
      emu:clock(259200)
      assert.are.equal(404, http(q(video_url)).status)
    end)

    it("serves HD voice (jssdk) as speex, and only voice", function()
      local voice = media_id_of(upload(token, "voice", helper.fixture("voice.amr")))
      local image = media_id_of(upload(token, "image", helper.fixture("image.jpg")))
      local res = get(token, voice, "/cgi-bin/media/get/jssdk")
      assert.are.equal("voice/speex", res.headers["content-type"])
      local name = voice:gsub("%-", "%%-")
      assert.matches('filename="' .. name .. '%.speex"', res.headers["content-disposition"])
      assert.are.equal(helper.read(helper.fixture("voice.amr")), res.body)
      assert_wechat_error(get(token, image, "/cgi-bin/media/get/jssdk"), 40007)
      assert_wechat_error(http(url("/cgi-bin/media/get/jssdk?media_id=" .. voice)), 41001)
    end)
  end)

  describe("switches", function()
    it("labels errors text/plain (legacy_text_plain)", function()
      emu:config { legacy_text_plain = true }
      local res = http(token_url(APPID, "wrong"))
      assert.are.equal("text/plain", res.headers["content-type"])
      assert.are.equal(40125, errcode(res))
    end)

    it("adds WeChat's hint and rid to errmsg (hint_suffix)", function()
      emu:config { hint_suffix = true }
      local res = http(token_url(APPID, "wrong"))
      local hex8 = ("%x"):rep(8)
      local hex = res.json.errmsg:match("^invalid appsecret hint: %[%w+%] rid: (" .. hex8 .. ")%-" .. hex8
        .. "%-" .. hex8 .. "$")
      assert.is_string(hex, res.json.errmsg)
      assert.is_true(math.abs(tonumber(hex, 16) - os.time()) < 60)
    end)

    it("also answers media_id for a thumb (thumb_media_id)", function()
      emu:config { thumb_media_id = true }
      local res = upload(emu:token(), "thumb", helper.fixture("thumb.jpg"))
      assert.are.equal(res.json.thumb_media_id, res.json.media_id)
    end)

    it("refuses token calls from outside the whitelist with 40164 and the caller's IP", function()
      local cfg = emu:config { whitelist = { "10.0.0.1" } }
      assert.same({ "10.0.0.1" }, cfg.whitelist)
      local res = http(token_url(APPID, SECRET))
      assert_wechat_error(res, 40164)
      assert.are.equal("invalid ip 127.0.0.1 ipv6 ::ffff:127.0.0.1, not in whitelist", res.json.errmsg)
      assert_wechat_error(stable_token(), 40164)
      emu:config { whitelist = { "10.0.0.1", "127.0.0.1" } }
      assert.is_string(http(token_url(APPID, SECRET)).json.access_token)
      cfg = emu:config { whitelist = cjson.null }
      assert.is_nil(cfg.whitelist)
      emu:config { whitelist = {} }
      assert_wechat_error(stable_token(), 40164)
    end)

    it("answers the whole config, and 400 for a bad one; reset restores the start config", function()
      local cfg = emu:config { limits = { image = 5 } }
      assert.same({ image = 5, voice = 2097152, video = 10485760, thumb = 65536 }, cfg.limits)
      assert.are.equal(7200, cfg.token_lifetime)
      assert.are.equal(259200, cfg.media_ttl)
      assert.are.equal(2, #cfg.apps)
      for _, bad in ipairs {
          { limits = { gif = 1 } }, { token_lifetime = "x" }, { nonsense = true }, { apps = {} } } do
        local status, res = emu:control("POST", "config", bad)
        assert.are.equal(400, status)
        assert.is_string(res.error)
      end
      emu:reset()
      assert.are.equal(10485760, emu:config({}).limits.image)
    end)
  end)

  describe("faults", function()
    local token, id
    before_each(function()
      token = emu:token()
      id = media_id_of(upload(token, "image", helper.fixture("image.jpg")))
    end)

    it("answers an HTTP status with an empty or HTML body, for count requests", function()
      assert.same({ queued = 2 }, emu:fault { route = "get", kind = "status", status = 503, count = 2 })
      for _ = 1, 2 do
        local res = get(token, id)
        assert.are.equal(503, res.status)
        assert.are.equal("", res.body)
      end
      assert.are.equal(200, get(token, id).status)
      emu:fault { route = "token", kind = "status", status = 502, body = "html" }
      local res = http(token_url(APPID, SECRET))
      assert.are.equal(502, res.status)
      assert.matches("^<html>", res.body)
      assert.matches("text/html", res.headers["content-type"])
      local log = emu:requests("get")
      assert.are.equal("status", log[1].fault)
      assert.are.equal(503, log[1].status)
      assert.is_nil(log[3].fault)
    end)

    it("answers WeChat errcodes with their real texts", function()
      for _, c in ipairs { { -1, "system error" }, { 45009, "reach max api daily quota limit" },
          { 45011, "api minute-quota reach limit  mustslower  retry next minute" },
          { 40001, "invalid credential, access_token is invalid or not latest" },
          { 42001, "access_token expired" } } do
        emu:fault { route = "get", kind = "errcode", errcode = c[1] }
        local res = get(token, id)
        assert_wechat_error(res, c[1])
        assert.are.equal(c[2], res.json.errmsg)
      end
      -- the token a 40001 fault refused stays live
      assert.are.equal(helper.read(helper.fixture("image.jpg")), get(token, id).body)
      assert.are.equal("errcode", emu:requests("get")[1].fault)
    end)

    it("applies a '*' fault to any WeChat route, a route's own fault first", function()
      emu:fault { route = "*", kind = "errcode", errcode = -1, count = 2 }
      emu:fault { route = "upload", kind = "errcode", errcode = 45011 }
      assert_wechat_error(upload(token, "image", helper.fixture("image.jpg")), 45011)
      assert_wechat_error(upload(token, "image", helper.fixture("image.jpg")), -1)
      assert_wechat_error(stable_token(), -1)
      assert.is_string(stable_token().json.access_token)
    end)

    it("delays the answer", function()
      emu:fault { route = "get", kind = "delay", seconds = 0.3 }
      local t0 = os.time()
      local out = helper.sh("curl -s -o /dev/null -w '%{time_total}' "
        .. url("/cgi-bin/media/get?access_token=" .. token .. "&media_id=" .. id))
      assert.is_true(tonumber(out) >= 0.3, out)
      assert.is_true(os.time() - t0 < 20)
      assert.are.equal(200, get(token, id).status)
      assert.are.equal("delay", emu:requests("get")[1].fault)
    end)

    it("drips the body slowly but whole", function()
      local bytes = helper.read(helper.fixture("image.jpg"))
      emu:fault { route = "get", kind = "drip", rate = #bytes * 2 }
      local out = helper.sh("curl -s -o " .. q(tmp .. "/dripped") .. " -w '%{time_total}' "
        .. url("/cgi-bin/media/get?access_token=" .. token .. "&media_id=" .. id))
      assert.is_true(tonumber(out) >= 0.3, out)
      assert.are.equal(bytes, helper.read(tmp .. "/dripped"))
      assert.are.equal("drip", emu:requests("get")[1].fault)
    end)

    it("drops the connection in the middle of the request body", function()
      local big = helper.write(tmp .. "/big.jpg", "\255\216\255" .. ("x"):rep(3 * 1024 * 1024))
      emu:fault { route = "upload", kind = "reset_request" }
      local res = upload(token, "image", big)
      assert.are_not.equal(0, res.exit)
      -- nothing but (maybe) "100 Continue" came back
      assert.is_true(res.status == nil or res.status == 100, tostring(res.status))
      assert.is_string(media_id_of(upload(token, "image", big)))
      local log = emu:requests("upload")
      assert.are.equal("reset_request", log[2].fault)
    end)

    it("drops the connection in the middle of the response body", function()
      emu:fault { route = "get", kind = "reset_response" }
      local res = get(token, id)
      assert.are.equal(200, res.status)
      assert.are_not.equal(0, res.exit)
      local full = helper.read(helper.fixture("image.jpg"))
      assert.is_true(#res.body < #full)
      assert.are.equal(tostring(#full), res.headers["content-length"])
    end)

    it("cuts a body short of its Content-Length", function()
      emu:fault { route = "token", kind = "truncate" }
      local res = http(token_url(APPID, SECRET))
      assert.are.equal(18, res.exit)   -- curl: partial file
      assert.is_nil(res.json)
      assert.is_true(#res.body < tonumber(res.headers["content-length"]))
      assert.is_string(http(token_url(APPID, SECRET)).json.access_token)
    end)

    it("answers 200 with an empty body under the file's headers (empty), on the CDN too", function()
      emu:fault { route = "get", kind = "empty" }
      local res = get(token, id)
      assert.are.equal(0, res.exit)
      assert.are.equal(200, res.status)
      assert.are.equal("", res.body)
      assert.are.equal("0", res.headers["content-length"])
      assert.are.equal("image/jpeg", res.headers["content-type"])
      assert.matches('^attachment; filename="', res.headers["content-disposition"])
      assert.are.equal("empty", emu:requests("get")[1].fault)
      local video = media_id_of(upload(token, "video", helper.fixture("video.mp4")))
      local video_url = get(token, video).json.video_url
      emu:fault { route = "video", kind = "empty" }
      local cdn = http(q(video_url))
      assert.are.equal(200, cdn.status)
      assert.are.equal("", cdn.body)
      assert.are.equal("video/mp4", cdn.headers["content-type"])
      assert.are.equal(helper.read(helper.fixture("video.mp4")), http(q(video_url)).body)
    end)

    it("answers 204 No Content (status 204)", function()
      emu:fault { route = "get", kind = "status", status = 204 }
      local res = get(token, id)
      assert.are.equal(0, res.exit)
      assert.are.equal(204, res.status)
      assert.are.equal("", res.body)
      assert.are.equal(400, (emu:control("POST", "fault", { route = "get", kind = "status", status = 204,
        body = "html" })))
      assert.are.equal(helper.read(helper.fixture("image.jpg")), get(token, id).body)
    end)

    it("answers 206 with a Content-Range and the first half of the file (partial)", function()
      local full = helper.read(helper.fixture("image.jpg"))
      emu:fault { route = "get", kind = "partial" }
      local res = get(token, id)
      assert.are.equal(0, res.exit)   -- a whole answer, as far as HTTP goes
      assert.are.equal(206, res.status)
      local half = math.floor(#full / 2)
      assert.are.equal(("bytes 0-%d/%d"):format(half - 1, #full), res.headers["content-range"])
      assert.are.equal(full:sub(1, half), res.body)
      assert.are.equal(tostring(half), res.headers["content-length"])
      assert.are.equal("image/jpeg", res.headers["content-type"])
      assert.is_string(res.headers["content-disposition"])
    end)

    it("answers an error JSON after a UTF-8 BOM, labelled as the file (bom_json)", function()
      emu:fault { route = "get", kind = "bom_json" }
      local res = get(token, id)
      assert.are.equal(200, res.status)
      assert.are.equal('\239\187\191{"errcode":-1,"errmsg":"system error"}', res.body)
      assert.are.equal("image/jpeg", res.headers["content-type"])
      assert.matches('^attachment; filename="' .. id:gsub("%p", "%%%0") .. '%.jpg"$',
        res.headers["content-disposition"])
      emu:fault { route = "get", kind = "bom_json", errcode = 40007 }
      assert.are.equal('\239\187\191{"errcode":40007,"errmsg":"invalid media_id"}', get(token, id).body)
      local bad = { route = "get", kind = "bom_json", errcode = "x" }
      assert.are.equal(400, (emu:control("POST", "fault", bad)))
    end)

    it("answers WeChat's error JSON as application/octet-stream from the CDN (octet_json)", function()
      local video = media_id_of(upload(token, "video", helper.fixture("video.mp4")))
      local video_url = get(token, video).json.video_url
      emu:fault { route = "video", kind = "octet_json" }
      local res = http(q(video_url))
      assert.are.equal(200, res.status)
      assert.are.equal("application/octet-stream", res.headers["content-type"])
      assert.are.equal('{"errcode":-1,"errmsg":"system error"}', res.body)
      assert.is_nil(res.headers["content-disposition"])
      assert.are.equal("octet_json", emu:requests("video")[1].fault)
      assert.are.equal(helper.read(helper.fixture("video.mp4")), http(q(video_url)).body)
    end)

    it("answers a body of only blanks under the file's headers (whitespace)", function()
      local full = helper.read(helper.fixture("image.jpg"))
      emu:fault { route = "get", kind = "whitespace" }
      local res = get(token, id)
      assert.are.equal(200, res.status)
      assert.are.equal(#full, #res.body)
      assert.matches("^[ \t\r\n]+$", res.body)
      assert.are.equal("image/jpeg", res.headers["content-type"])
      assert.is_string(res.headers["content-disposition"])
    end)

    it("drips below a client's low-speed limit (2 bytes/s) until the client gives up", function()
      local full = helper.read(helper.fixture("image.jpg"))
      emu:fault { route = "get", kind = "drip", rate = 2 }
      -- curl's low-speed abort: under 1024 bytes/s for 2 s
      local res = http("--speed-limit 1024 --speed-time 2 "
        .. url("/cgi-bin/media/get?access_token=" .. token .. "&media_id=" .. id))
      assert.are.equal(28, res.exit)   -- curl: operation too slow
      assert.are.equal(200, res.status)
      assert.are.equal(tostring(#full), res.headers["content-length"])
      assert.is_true(#res.body > 0 and #res.body < #full, tostring(#res.body))
      assert.are.equal(full:sub(1, #res.body), res.body)
      assert.are.equal(full, get(token, id).body)
    end)

    it("refuses a bad fault with 400", function()
      for _, bad in ipairs { { route = "nope", kind = "status" }, { route = "get", kind = "explode" },
          { route = "get", kind = "status", status = 200 }, { route = "get", kind = "delay", count = 0 },
          { route = "get", kind = "octet_json", errmsg = 5 } } do
        local status, res = emu:control("POST", "fault", bad)
        assert.are.equal(400, status)
        assert.is_string(res.error)
      end
      assert.are.equal(200, get(token, id).status)
    end)
  end)

  describe("control API", function()
    it("logs every WeChat request without tokens or secrets", function()
      local token = emu:token()
      local id = media_id_of(upload(token, "image", helper.fixture("image.png"), "holiday.png"))
      get(token, id)
      stable_token()
      http(token_url(APPID, "wrong"))
      local log = emu:log()
      assert.are.equal(5, #log)
      local routes = {}
      for i, e in ipairs(log) do routes[i] = e.route end
      assert.same({ "token", "upload", "get", "stable_token", "token" }, routes)
      local up = log[2]
      assert.are.equal("POST", up.method)
      assert.are.equal(200, up.status)
      assert.are.equal(0, up.errcode)
      assert.are.equal("holiday.png", up.filename)
      assert.is_true(up.bytes_in > #helper.read(helper.fixture("image.png")))
      assert.is_true(log[3].bytes_out > #helper.read(helper.fixture("image.png")))
      assert.is_number(up.connection)
      assert.is_number(up.time)
      assert.are.equal(40125, log[5].errcode)
      -- nothing the emulator keeps or writes carries a token or a secret
      local text = assert(helper.sh("curl -s " .. url("/__emulator/log")))
      for _, secret in ipairs { token, SECRET, "wrong" } do
        assert.is_nil(text:find(secret, 1, true))
        local _, found = helper.sh("grep -rqF -- " .. q(secret) .. " " .. q(emu.dir .. "/logs"))
        assert.is_false(found)
      end
    end)

    it("does not log after a reset a request that began before it", function()
      -- a spec's leftover transfer (a dripped body the client gave up on) ends in the next spec's
      -- log otherwise, and that spec's count of requests is off by one
      local token = emu:token()
      local id = media_id_of(upload(token, "image", helper.fixture("image.jpg")))
      local bytes = helper.read(helper.fixture("image.jpg"))
      emu:fault { route = "get", kind = "drip", rate = #bytes }   -- about 1 s
      local done = tmp .. "/drip-done"
      os.remove(done)
      helper.sh("(curl -s -o /dev/null " .. url("/cgi-bin/media/get?access_token=" .. token .. "&media_id="
        .. id) .. "; touch " .. q(done) .. ") >/dev/null 2>&1 &")
      helper.sh("sleep 0.3")
      emu:reset()
      local deadline = os.time() + 10
      while not helper.read(done) do
        assert(os.time() <= deadline, "the dripped get did not end")
        helper.sh("sleep 0.1")
      end
      helper.sh("sleep 0.2")   -- nginx logs after the last byte is sent
      assert.same({}, emu:log())
      stable_token()
      assert.equal(1, #emu:requests("stable_token"))
    end)

    it("logs a handler's error through the project's one redaction (wxmedia.redact)", function()
      -- the error names a path of the emulator's folder, where a secret-looking parameter in any case
      -- must be redacted as it is in every message of the library
      local dir = tmp .. "/ACCESS_TOKEN=tokentokentoken"
      local out, ok = script("start --json --dir " .. q(dir))
      finally(function() script("stop --dir " .. q(dir)) end)
      assert.is_true(ok, out)
      local base = cjson.decode(out).base_url
      local tok = http(q(base .. "/cgi-bin/token?grant_type=client_credential&appid=" .. APPID
        .. "&secret=" .. SECRET)).json.access_token
      helper.rmtree(dir .. "/storage")   -- the upload cannot store its file
      local res = http("-F " .. q("media=@" .. helper.fixture("image.png")) .. " "
        .. q(base .. "/cgi-bin/media/upload?type=image&access_token=" .. tok))
      assert_wechat_error(res, -1)
      local log = helper.read(dir .. "/logs/emulator.log") or ""
      assert.matches("ACCESS_TOKEN=REDACTED", log)
      assert.is_nil(log:find("tokentokentoken", 1, true))
      assert.is_nil(log:find(tok, 1, true))
    end)

    it("shows one connection for requests curl makes on one keep-alive connection", function()
      local token = emu:token()
      local u = emu.base_url .. "/cgi-bin/media/upload?type=image&access_token=" .. token
      helper.sh("curl -s -o /dev/null -o /dev/null -o /dev/null -F "
        .. q("media=@" .. helper.fixture("image.png"))
        .. " " .. q(u) .. " " .. q(u) .. " " .. q(u))
      local log = emu:requests("upload")
      assert.are.equal(3, #log)
      assert.are.equal(log[1].connection, log[3].connection)
      assert.are.equal(log[1].worker, log[3].worker)
    end)

    it("empties its storage folder on reset, files it no longer knows included", function()
      local token = emu:token()
      assert.is_string(media_id_of(upload(token, "image", helper.fixture("image.png"))))
      -- a file whose record the shared dict evicted, a left-over part, a name with a quote
      for _, name in ipairs { ("E"):rep(64), ("P"):rep(64) .. ".part", ".hidden", "it's" } do
        helper.write(emu.dir .. "/storage/" .. name, "bytes")
      end
      assert.are.equal(5, #helper.ls(emu.dir .. "/storage"))
      emu:reset()
      assert.same({}, helper.ls(emu.dir .. "/storage"))
      assert.is_string(media_id_of(upload(emu:token(), "image", helper.fixture("image.png"))))
      assert.are.equal(1, #helper.ls(emu.dir .. "/storage"))
    end)

    it("moves the clock and answers the offset; reset clears everything", function()
      assert.are.equal(100, emu:clock(100).offset)
      assert.are.equal(150, emu:clock(50).offset)
      local status = emu:control("POST", "clock", { advance = -5 })
      assert.are.equal(400, status)
      local token = emu:token()
      emu:fault { route = "get", kind = "errcode", errcode = -1 }
      emu:reset()
      assert.same({}, emu:log())
      assert.are.equal("[]", (helper.sh("curl -s " .. url("/__emulator/log"))))
      assert.are.equal(0, emu:clock(0).offset)
      assert_wechat_error(upload(token, "image", helper.fixture("image.png")), 40001)
      assert.are.equal(400, (emu:control("POST", "nothing", {})))
      assert.are.equal(400, (http("-X POST --data-binary '[1' " .. url("/__emulator/config")).status))
    end)
  end)

  describe("strictness", function()
    local token, up
    before_each(function()
      token = emu:token()
      up = "/cgi-bin/media/upload?type=image&access_token=" .. token
    end)

    local function still_serving()
      assert.are.equal(200, (emu:control("GET", "ping")))
      assert.is_string(media_id_of(upload(token, "image", helper.fixture("image.png"))))
    end

    it("answers 41005 for bodies that are not readable multipart", function()
      local part = '\r\nContent-Disposition: form-data; name="media"; filename="a.jpg"\r\n\r\n'
        .. "\255\216\255data"
      for _, c in ipairs {
        { "multipart/form-data; boundary=XyZ", "--XyZ" .. part },                      -- no closing delimiter
        { "multipart/form-data; boundary=XyZ", "--XyZ" .. part .. "\r\n--Abc--\r\n" },  -- wrong delimiter
        { "multipart/form-data", "--XyZ" .. part .. "\r\n--XyZ--\r\n" },                -- no boundary
        { "multipart/form-data; boundary=", "--" .. part .. "\r\n----\r\n" },
        { "application/octet-stream", "\255\216\255data" },
        { "multipart/form-data; boundary=XyZ", "--XyZ\r\nno header here\r\n\r\nx\r\n--XyZ--\r\n" },
        { "multipart/form-data; boundary=XyZ",
          "--XyZ\r\nX-Long: " .. ("a"):rep(100000) .. "\r\n\r\nx\r\n--XyZ--\r\n" },
        { "multipart/form-data; boundary=XyZ", ("\0\1\2"):rep(50000) },
        { "multipart/form-data; boundary=XyZ", "" },
      } do
        assert_wechat_error(post_raw(up, c[1], c[2]), 41005)
      end
      still_serving()
    end)

    it("reads a well-formed hand-made body, preamble, quoted boundary and all", function()
      local body = "preamble\r\n--a'b c\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhello\r\n"
        .. "--a'b c\r\ncontent-disposition: form-data; name=media; filename=x.gif\r\n\r\nGIF89a\r\n--a'b\r\n"
        .. "\r\n--a'b c--\r\nepilogue"
      local res = post_raw(up, 'multipart/form-data; boundary="a\'b c"', body)
      local id = assert(media_id_of(res), res.body)
      assert.are.equal("GIF89a\r\n--a'b\r\n", get(token, id).body)
    end)

    it("refuses a body far over the limit without storing it, and keeps the connection usable", function()
      emu:config { limits = { image = 1000 } }
      local big = tmp .. "/huge.jpg"
      helper.sh("head -c 52428800 /dev/zero > " .. q(big))
      local res = upload(token, "image", big)
      assert_wechat_error(res, 40006)
      assert.same({}, helper.ls(emu.dir .. "/storage"))
      -- twice on one keep-alive connection, then a good upload on it: the rest of each refused body
      -- must not be taken for the next request
      helper.sh(("curl -s -o %s -o %s -F %s %s %s --next -s -o %s -F %s %s"):format(
        q(tmp .. "/r1"), q(tmp .. "/r2"), q("media=@" .. big), url(up), url(up),
        q(tmp .. "/r3"), q("media=@" .. helper.write(tmp .. "/tiny.gif", "GIF89a")), url(up)))
      os.remove(big)
      assert.are.equal(40006, cjson.decode(helper.read(tmp .. "/r1")).errcode)
      assert.are.equal(40006, cjson.decode(helper.read(tmp .. "/r2")).errcode)
      assert.is_string(cjson.decode(helper.read(tmp .. "/r3")).media_id, helper.read(tmp .. "/r3"))
      local log = emu:requests("upload")
      assert.are.equal(4, #log)
      assert.are.equal(log[2].connection, log[4].connection)
      still_serving()
    end)

    it("answers WeChat's error JSON to junk query strings and unknown paths", function()
      for _, path in ipairs {
        "/cgi-bin/media/upload?%%%&&&type[]=x&access_token",
        "/cgi-bin/media/get?access_token=%00%ff&media_id=%zz",
        "/cgi-bin/media/get?access_token&access_token&media_id",
        "/cgi-bin/token?" .. ("a=b&"):rep(500),
        "/cgi-bin/nothing",
      } do
        local res = http(url(path))
        assert.are.equal(200, res.status)
        assert.is_number(errcode(res), path)
      end
      local twice = http(url("/cgi-bin/media/get?access_token=" .. token .. "&media_id=a&media_id=b"))
      assert_wechat_error(twice, 40007)
      still_serving()
    end)
  end)

  describe("concurrency", function()
    it("takes 50 parallel uploads on two workers, all distinct and each retrievable", function()
      local one = emu
      emu = helper.start_emulator { workers = 2 }
      finally(function()
        emu:stop()
        emu = one
      end)
      local token = emu:token()
      local dir = tmp .. "/par"
      os.execute("mkdir -p " .. q(dir))
      local cmds = {}
      for i = 1, 50 do
        local file = helper.write(("%s/in%02d.gif"):format(dir, i), "GIF89a" .. ("%d-"):format(i):rep(i * 20))
        cmds[i] = ("curl -s -o %s -F %s %s &"):format(q(("%s/out%02d"):format(dir, i)), q("media=@" .. file),
          url("/cgi-bin/media/upload?type=image&access_token=" .. token))
      end
      helper.sh(table.concat(cmds, "\n") .. "\nwait")
      local seen, gets = {}, {}
      for i = 1, 50 do
        local res = cjson.decode(helper.read(("%s/out%02d"):format(dir, i)) or "")
        local id = res and res.media_id
        assert.is_string(id)
        assert.is_nil(seen[id])
        seen[id] = true
        gets[i] = ("-o %s %s"):format(q(("%s/got%02d"):format(dir, i)),
          url("/cgi-bin/media/get?access_token=" .. token .. "&media_id=" .. id))
      end
      -- the 50 gets on one keep-alive connection
      helper.sh("curl -s " .. table.concat(gets, " "))
      for i = 1, 50 do
        local sent, got = ("%s/in%02d.gif"):format(dir, i), ("%s/got%02d"):format(dir, i)
        assert.are.equal(helper.read(sent), helper.read(got))
      end
      assert.are.equal(50, #emu:requests("upload"))
    end)
  end)
end)
