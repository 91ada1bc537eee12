-- The public API against the emulator: upload and get of every type, checks before upload (nothing
-- sent), retries and their limit, codes never retried, the module-level client from the environment,
-- argument errors, and no secret in any message.
local helper = require "helper"
local wxmedia = require "wxmedia"

local messages = {}   -- every message this file sees; the last test checks none holds a secret
local function note(...)
  local msg = select(2, ...)
  if msg then messages[#messages + 1] = msg end
  return ...
end

describe("wxmedia", function()
  local emu, dir

  setup(function()
    emu = helper.start_emulator()
    dir = helper.tmpdir()
  end)
  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(dir)
  end)
  before_each(function() emu:reset() end)

  local waits
  local function client(opts)
    waits = {}
    local o = { appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
      token_store = wxmedia.store.memory(), sleep = function(s) waits[#waits + 1] = s end }
    for k, v in pairs(opts or {}) do o[k] = v end
    return assert(wxmedia.new(o))
  end

  describe("upload and get", function()
    for _, case in ipairs({ { "image", "image.jpg", "image/jpeg" }, { "image", "image.png", "image/png" },
        { "image", "image.gif", "image/gif" }, { "voice", "voice.amr", "audio/amr" },
        { "voice", "voice.mp3", "audio/mpeg" }, { "thumb", "thumb.jpg", "image/jpeg" } }) do
      local mtype, name, ctype = case[1], case[2], case[3]
      it(("%s %s goes up and comes back byte-identical"):format(mtype, name), function()
        local c = client()
        local res = assert(note(c:upload(mtype, helper.fixture(name))))
        assert.are.equal(mtype, res.type)
        assert.matches("^[%w_%-]+$", res.media_id)
        assert.are.equal(64, #res.media_id)
        assert.is_number(res.created_at)
        local out = dir .. "/copy-" .. name
        local got = assert(note(c:get(res.media_id, out)))
        assert.are.equal(out, got.path)
        assert.are.equal(helper.read(helper.fixture(name)), helper.read(out))
        assert.are.equal(#helper.read(out), got.size)
        assert.matches(ctype, got.content_type, 1, true)
        assert.are.equal(name, emu:requests("upload")[1].filename)
      end)
    end

    it("thumb answers both thumb_media_id and media_id", function()
      local res = assert(note(client():upload("thumb", helper.fixture("thumb.jpg"))))
      assert.are.equal(res.media_id, res.thumb_media_id)
      assert.are.equal(64, #res.thumb_media_id)
    end)

    it("sends a name with the detected format's extension, whatever the file is called", function()
      local odd = helper.write(dir .. "/相片 (1)", helper.read(helper.fixture("image.png")))
      assert(note(client():upload("image", odd)))
      assert.are.equal("media.png", emu:requests("upload")[1].filename)
    end)

    it("gets a video by following its video_url", function()
      local c = client()
      local res = assert(note(c:upload("video", helper.fixture("video.mp4"))))
      local out = dir .. "/video-copy.mp4"
      local got = assert(note(c:get(res.media_id, out)))
      assert.matches("^http", got.video_url)
      assert.are.equal(helper.read(helper.fixture("video.mp4")), helper.read(out))
      assert.are.equal(2815, got.size)
      assert.are.equal(1, #emu:requests("video"))
    end)

    it("gets a voice's hd version with jssdk = true", function()
      local c = client()
      local res = assert(note(c:upload("voice", helper.fixture("voice.amr"))))
      local got = assert(note(c:get(res.media_id, dir .. "/hd.speex", { jssdk = true })))
      assert.are.equal("voice/speex", got.content_type)
      assert.matches("%.speex$", got.filename)
      assert.are.equal(1, #emu:requests("jssdk"))
    end)

    it("takes fsync = false (no flush before the rename): a get still replaces the file whole", function()
      local c = client({ fsync = false })
      local res = assert(note(c:upload("image", helper.fixture("image.png"))))
      local out = helper.write(dir .. "/nofsync.png", "previous content, longer than nothing")
      local got = assert(note(c:get(res.media_id, out)))
      assert.are.equal(out, got.path)
      assert.are.equal(helper.read(helper.fixture("image.png")), helper.read(out))
      assert.has_error(function() client({ fsync = "no" }) end,
        "bad option 'fsync' to 'new' (boolean expected, got string)")
    end)

    it("reports an unknown media_id with errcode 40007 and leaves the destination alone", function()
      local out = helper.write(dir .. "/keep.jpg", "previous content")
      local res, msg, details = note(client():get(("x"):rep(64), out))
      assert.is_nil(res)
      assert.are.equal("api", details.kind)
      assert.are.equal(40007, details.errcode)
      assert.matches("media_id is invalid", msg)
      assert.are.equal("previous content", helper.read(out))
      assert.are.equal(1, #emu:requests("get"))
    end)
  end)

  describe("checks before upload send nothing", function()
    local cases = {
      { "unknown type", "picture", "image.jpg", "unknown media type" },
      { "missing file", "image", "/nonexistent/x.jpg", "cannot upload /nonexistent/x.jpg: no such file" },
      { "directory", "image", "DIR", "is a directory" },
      { "empty file", "image", "EMPTY", "is empty" },
      { "over the limit", "thumb", "BIG", "the limit for thumb is 64 KB %(65536 bytes%)" },
      { "wrong format for the type", "thumb", "image.png", "thumb takes JPEG" },
      { "not media at all", "voice", "TEXT", "voice takes AMR or MP3" },
    }
    for _, case in ipairs(cases) do
      it(case[1], function()
        local path = case[3]
        if path == "DIR" then path = dir
        elseif path == "EMPTY" then path = helper.write(dir .. "/empty.jpg", "")
        elseif path == "BIG" then path = helper.write(dir .. "/big.jpg", ("\255\216\255\224"):rep(20000))
        elseif path == "TEXT" then path = helper.write(dir .. "/notes.mp3", "plain words")
        elseif path:sub(1, 1) ~= "/" then path = helper.fixture(path) end
        local res, msg, details = note(client():upload(case[2], path))
        assert.is_nil(res)
        assert.are.equal("input", details.kind)
        assert.is_false(details.retryable)
        assert.matches(case[4], msg)
        assert.are.same({}, emu:log())
      end)
    end

    it("per-call limits override the client's", function()
      local c = client({ limits = { image = 100 } })
      local _, msg = note(c:upload("image", helper.fixture("image.jpg")))
      assert.matches("the limit for image is 100 bytes", msg)
      assert(note(c:upload("image", helper.fixture("image.jpg"), { limits = { image = 4096 } })))
    end)
  end)

  describe("retries", function()
    it("stop at the limit and report the attempts", function()
      local seen = {}
      local c = client({ retries = 2,
        on_retry = function(n, m, d, delay) seen[#seen + 1] = { n, m, d, delay } end })
      emu:fault({ route = "upload", kind = "status", status = 503, count = 10 })
      local res, msg, details = note(c:upload("image", helper.fixture("image.jpg")))
      assert.is_nil(res)
      assert.are.equal("http", details.kind)
      assert.are.equal(503, details.status)
      assert.are.equal(3, details.attempts)
      assert.matches("503", msg)
      assert.are.equal(3, #emu:requests("upload"))
      assert.are.equal(2, #waits)
      assert.are.equal(2, #seen)
      assert.are.equal(1, seen[1][1])
      assert.are.equal(waits[1], seen[1][4])
      assert.is_true(waits[2] <= 0.4 and waits[1] <= 0.2)  -- full jitter under base * 2^(n-1)
    end)

    for _, f in ipairs({ { kind = "errcode", errcode = -1 }, { kind = "errcode", errcode = 45011 },
        { kind = "status", status = 429 }, { kind = "status", status = 502, body = "html" },
        { kind = "reset_response" }, { kind = "truncate" } }) do
      it(("pass after %s %s"):format(f.kind, tostring(f.errcode or f.status or "")), function()
        f.route = "upload"
        f.count = 2
        emu:fault(f)
        local res = assert(note(client():upload("image", helper.fixture("image.jpg"))))
        assert.are.equal(64, #res.media_id)
        assert.are.equal(3, #emu:requests("upload"))
        assert.are.equal(2, #waits)
      end)
    end

    it("a retried get still writes the right bytes", function()
      local c = client()
      local res = assert(note(c:upload("image", helper.fixture("image.png"))))
      emu:fault({ route = "get", kind = "truncate" })
      local out = dir .. "/retried.png"
      assert(note(c:get(res.media_id, out)))
      assert.are.equal(helper.read(helper.fixture("image.png")), helper.read(out))
    end)

    it("never after the progress function aborts", function()
      local calls = 0
      local c = client({ progress = function() calls = calls + 1; return false end })
      local res, msg, details = note(c:upload("image", helper.fixture("image.jpg")))
      assert.is_nil(res)
      assert.are.equal("aborted", details.kind)
      assert.is_false(details.retryable)
      assert.matches("^cannot upload .*image%.jpg: the transfer was stopped by the progress function", msg)
      assert.are.equal(1, calls)
      assert.are.same({}, waits)
    end)

    it("per-call retries override the client's; a refused connection is kind connect", function()
      local c = client({ base_url = "http://127.0.0.1:1", retries = 5 })
      local res, _, details = note(c:upload("image", helper.fixture("image.jpg"), { retries = 1 }))
      assert.is_nil(res)
      assert.are.equal("connect", details.kind)
      assert.is_true(details.retryable)
      assert.are.equal(2, details.attempts)
    end)

    local never = { 40004, 40005, 40006, 40007, 41005, 41006, 44001, 45009, 40013, 40125, 48001, 40164 }
    for _, code in ipairs(never) do
      it(("never for errcode %d"):format(code), function()
        emu:fault({ route = "upload", kind = "errcode", errcode = code, count = 5 })
        local res, msg, details = note(client():upload("image", helper.fixture("image.jpg")))
        assert.is_nil(res)
        assert.are.equal(code, details.errcode)
        assert.is_false(details.retryable)
        assert.are.equal(1, details.attempts)
        assert.matches(tostring(code), msg)
        assert.are.equal(1, #emu:requests("upload"))
        assert.are.same({}, waits)
        if code == 45009 then assert.matches("daily API quota", msg) end
      end)
    end
  end)

  describe("arguments", function()
    it("raise in Lua's wording", function()
      local c = client()
      assert.has_error(function() c:upload(nil, "x") end,
        "bad argument #1 to 'upload' (string expected, got no value)")
      assert.has_error(function() c:get("id", 42) end,
        "bad argument #2 to 'get' (string expected, got number)")
      assert.has_error(function() wxmedia.upload("image", {}) end,
        "bad argument #2 to 'upload' (a table with data = bytes, or with file = a file handle or a reader, "
        .. "expected)")
      assert.has_error(function() wxmedia.upload("image", 42) end,
        "bad argument #2 to 'upload' (string or table expected, got number)")
      assert.has_error(function() wxmedia.new("x") end,
        "bad argument #1 to 'new' (table expected, got string)")
      assert.has_error(function() wxmedia.new({ appid = 1, secret = "s" }) end)
    end)

    it("new without a token source returns nil and a message", function()
      local c, msg, details = note(wxmedia.new({ base_url = emu.base_url }))
      assert.is_nil(c)
      assert.matches("appid and secret", msg)
      assert.are.equal("config", details.kind)
    end)
  end)

  describe("module-level client", function()
    local function child(env, code)
      local script = helper.write(dir .. "/child.lua", ([[
        package.path = %q .. "/lua/?.lua;" .. package.path
        local wxmedia = require "wxmedia"
      ]]):format(helper.root) .. code)
      local cpath = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so;;"
      local vars = { "LUA_CPATH=" .. helper.shell_quote(cpath) }
      for k, v in pairs(env) do vars[#vars + 1] = k .. "=" .. helper.shell_quote(v) end
      return helper.sh("env -u WECHAT_APPID -u WECHAT_APPSECRET -u WECHAT_ACCESS_TOKEN -u WXMEDIA_BASE_URL "
        .. table.concat(vars, " ") .. " " .. helper.lua .. " " .. helper.shell_quote(script) .. " 2>&1")
    end

    it("is driven by WECHAT_APPID, WECHAT_APPSECRET and WXMEDIA_BASE_URL", function()
      local out = child({ WECHAT_APPID = helper.APPID, WECHAT_APPSECRET = helper.SECRET,
        WXMEDIA_BASE_URL = emu.base_url }, ([[
        local res = assert(wxmedia.upload("image", %q))
        local got = assert(wxmedia.get(res.media_id, %q))
        io.write(res.media_id, " ", got.size)
      ]]):format(helper.fixture("image.jpg"), dir .. "/env-copy.jpg"))
      assert.matches("^[%w_%-]+ 1980$", out)
      assert.are.equal(1, #emu:requests("stable_token"))
    end)

    it("takes WECHAT_ACCESS_TOKEN as a static token", function()
      local out = child({ WECHAT_ACCESS_TOKEN = emu:token(), WXMEDIA_BASE_URL = emu.base_url }, ([[
        io.write(assert(wxmedia.upload("voice", %q)).type)
      ]]):format(helper.fixture("voice.amr")))
      assert.are.equal("voice", out)
      assert.are.equal(0, #emu:requests("stable_token"))
    end)

    it("says how to configure it when nothing is set", function()
      local out = child({}, [[
        local res, msg, details = wxmedia.upload("image", "x.jpg")
        io.write(tostring(res), "|", msg, "|", details.kind)
      ]])
      assert.matches("^nil|wxmedia is not configured.*WECHAT_APPID.*|config$", out)
    end)

    it("is replaced by configure", function()
      local out = child({ WECHAT_ACCESS_TOKEN = "86_ignored" }, ([[
        assert(wxmedia.configure({ appid = %q, secret = %q, base_url = %q, token_api = "classic" }))
        io.write(assert(wxmedia.upload("image", %q)).type, " ", #assert(wxmedia.token()))
      ]]):format(helper.APPID, helper.SECRET, emu.base_url, helper.fixture("image.gif")))
      assert.matches("^image %d+$", out)
      assert.are.equal(1, #emu:requests("token"))
    end)
  end)

  it("never puts a token or the secret in a message", function()
    assert.is_true(#messages > 20)
    for _, m in ipairs(messages) do
      assert.is_nil(m:find(helper.SECRET, 1, true), m)
      assert.is_false(helper.holds_token(m), m)
      assert.is_nil(m:find("access_token=", 1, true) and not m:find("access_token=***", 1, true), m)
    end
  end)
end)
