-- Hostile servers and hostile paths at the level of the client (issue 13): answers that are not the
-- file never become it, odd JSON values never raise or mislead, a slow drip stops, NUL bytes never
-- cut a path, a video_url to a private address is not followed unless allowed, and every lock is
-- released on every path. (The core's own hostile specs are in core_hostile_spec.lua.)
-- luacheck: no max line length
local helper = require "helper"
local nginx_helper = require "nginx_helper"
local wxmedia = require "wxmedia"
local store = require "wxmedia.store"

local q = helper.shell_quote

describe("hostile", function()
  local emu, dir
  local messages = {}

  setup(function()
    emu = helper.start_emulator()
    dir = helper.tmpdir()
  end)
  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(dir)
  end)
  before_each(function() emu:reset() end)

  local function client(extra)
    local o = { appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url, retries = 0,
      token_store = store.memory(), sleep = function() end }
    for k, v in pairs(extra or {}) do o[k] = v end
    return assert(wxmedia.new(o))
  end

  local function fails(kind, res, err, details)
    assert.is_nil(res)
    messages[#messages + 1] = err
    assert.equal(kind, details.kind, err)
    return err, details
  end

  -- A destination with content and an old mtime, and a check that nothing touched it or its folder.
  local function destination(name)
    local d = helper.tmpdir()
    local path = helper.write(d .. "/" .. name, "precious")
    helper.sh("touch -d '2001-01-01' " .. q(path))
    local mtime = helper.mtime(path)
    return path, function()
      assert.equal("precious", helper.read(path))
      assert.equal(mtime, helper.mtime(path))
      assert.same({ name }, helper.ls(d))
      helper.rmtree(d)
    end
  end

  describe("an answer that is not the file never becomes it", function()
    local cases = {
      { route = "get", fault = { kind = "empty" }, what = "200 with an empty body" },
      { route = "get", fault = { kind = "status", status = 204, body = "empty" }, what = "204" },
      { route = "get", fault = { kind = "partial" }, what = "206 with a Content-Range" },
      { route = "get", fault = { kind = "whitespace" }, what = "a body of blanks" },
      { route = "get", fault = { kind = "bom_json", errcode = 40007 }, what = "error JSON after a UTF-8 BOM" },
      { route = "video", fault = { kind = "empty" }, what = "a video CDN's 200 with an empty body" },
      { route = "video", fault = { kind = "octet_json" }, what = "a video CDN's error JSON as octet-stream" },
    }
    for _, case in ipairs(cases) do
      it(case.what .. " (" .. case.route .. ")", function()
        local c = client()
        local fixture = case.route == "video" and "video.mp4" or "image.jpg"
        local up = assert(c:upload(case.route == "video" and "video" or "image", helper.fixture(fixture)))
        local fault = { route = case.route }
        for k, v in pairs(case.fault) do fault[k] = v end
        emu:fault(fault)
        local path, untouched = destination("keep.bin")
        local res, err, details = c:get(up.media_id, path)
        assert.is_nil(res, "the answer became the file")
        messages[#messages + 1] = err
        assert.is_truthy(({ api = true, http = true, transfer = true })[details.kind], err)
        untouched()
      end)
    end
  end)

  it("a drip below the low-speed limit stops (kind timeout), destination untouched", function()
    local c = client({ low_speed_time = 2 })
    local up = assert(c:upload("image", helper.fixture("image.png")))
    emu:fault({ route = "get", kind = "drip", rate = 2 })
    local path, untouched = destination("slow.png")
    fails("timeout", c:get(up.media_id, path))
    untouched()
  end)

  it("a NUL byte never cuts a path: nothing is sent, nothing written", function()
    local c = client()
    local precious = helper.write(dir .. "/precious.txt", "precious")
    fails("input", c:get(string.rep("a", 64), precious .. "\0.jpg"))
    assert.equal("precious", helper.read(precious))
    local img = helper.write(dir .. "/img.jpg", helper.read(helper.fixture("image.jpg")))
    fails("input", c:upload("image", img .. "\0x"))
    fails("input", c:get("id\0x", dir .. "/x.jpg"))
    assert.same({}, emu:requests("upload"))
    assert.same({}, emu:requests("get"))
  end)

  it("a media_id over 512 characters is the caller's error, not a retryable one", function()
    local _, details = fails("input", client({ retries = 3 }):get(string.rep("a", 5 * 1024 * 1024), dir .. "/x"))
    assert.is_false(details.retryable)
    assert.same({}, emu:requests("get"))
  end)

  it("a video_url to a private address is refused when private URLs are not allowed", function()
    local c = client({ allow_private_urls = false })
    local up = assert(c:upload("video", helper.fixture("video.mp4")))
    local path, untouched = destination("video.mp4")
    fails("blocked", c:get(up.media_id, path))
    untouched()
    assert.same({}, emu:requests("video"))
    -- against the emulator (a loopback base URL) they are allowed by default
    assert(client():get(up.media_id, dir .. "/video-ok.mp4"))
  end)

  describe("locks are released on every path", function()
    -- true when another process takes the lock file at once
    local function free(lockfile)
      local cpath = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so;;"
      local out = helper.sh(("LUA_CPATH=%s %s -e %s"):format(q(cpath), helper.lua, q(([[
        local l = require("wxmedia.core").lock(%q, 0.2)
        io.write(l and "free" or "held")]]):format(lockfile))))
      return out == "free"
    end

    it("after a progress function that raises inside a locked section", function()
      local path = dir .. "/progress-store.json"
      local warnings = {}
      local c = client({ token_store = store.file(path), lock_timeout = 0.5,
        on_warning = function(m) warnings[#warnings + 1] = m end })
      local ok, err = pcall(c.upload, c, "image", helper.fixture("image.jpg"), {
        progress = function() c:token(true) end })
      assert.is_false(ok)
      assert.matches("busy", tostring(err))
      assert(c:token(true))
      for _, m in ipairs(warnings) do assert.is_nil(m:find("lock", 1, true), m) end
      local lockfile = path .. ".wxmedia_token_stable_" .. helper.APPID .. "_" .. emu.base_url:gsub("^http://", "")
        :gsub("[^%w%._%-]", "_") .. "_lock.lock"
      assert.is_true(free(lockfile), lockfile)
    end)
  end)

  describe("odd values from a server", function()
    local server
    setup(function()
      server = nginx_helper.start({ workers = 1, thread_pool = false,
        server = ("location / { content_by_lua_file %s; }"):format(helper.root .. "/spec/fixtures/hostile/server.lua") })
    end)
    teardown(function() if server then server:stop() end end)

    local function odd(extra)
      local o = { base_url = server.base_url, retries = 0, token_store = store.memory(), sleep = function() end }
      for k, v in pairs(extra) do o[k] = v end
      return assert(wxmedia.new(o))
    end

    for _, appid in ipairs({ "wxinf", "wxnan", "wxzero", "wxhuge", "wxneg" }) do
      it("an access_token life that is not 1 to 86400 s (" .. appid .. ") fails, kind api, no lock left", function()
        local path = dir .. "/" .. appid .. ".json"
        local warnings = {}
        local c = odd({ appid = appid, secret = "s3cret-value", token_store = store.file(path), lock_timeout = 0.5,
          on_warning = function(m) warnings[#warnings + 1] = m end })
        local err = fails("api", c:token())
        assert.matches("life of", err, 1, true)
        fails("api", c:token())
        assert.same({}, warnings)      -- the second call found the lock free
        for _, name in ipairs(helper.ls(dir)) do assert.is_nil(name:find("tmp", 1, true), name) end
      end)
    end

    it("an errcode sent as a string is read as the number", function()
      local _, details = fails("token", odd({ appid = "wxstrcode", secret = "s3cret-value" }):token())
      assert.equal(40013, details.errcode)
      _, details = fails("token", odd({ access_token = "tok_errcode_string" }):upload("image", helper.fixture("image.jpg")))
      assert.equal(40001, details.errcode)
      local res = assert(odd({ access_token = "tok_errcode_zero_string" }):upload("image", helper.fixture("image.jpg")))
      assert.equal(64, #res.media_id)
      res = assert(odd({ access_token = "tok_errcode_null" }):upload("image", helper.fixture("image.jpg")))
      assert.equal(64, #res.media_id)
    end)

    it("a media_id that is not one (escapes, a number, none) is refused, kind api", function()
      for _, tok in ipairs({ "tok_escape", "tok_number_id", "tok_no_id" }) do
        local err = fails("api", odd({ access_token = tok }):upload("image", helper.fixture("image.jpg")))
        assert.is_nil(err:find("\27", 1, true))
      end
    end)

    it("a token or secret a server echoes in its errmsg is redacted", function()
      local err, details = fails("token", odd({ access_token = "tok_echo_token_0123456789" })
        :upload("image", helper.fixture("image.jpg")))
      assert.is_nil(err:find("tok_echo_token_0123456789", 1, true))
      assert.is_nil((details.errmsg or ""):find("tok_echo_token_0123456789", 1, true))
      err, details = fails("token", odd({ appid = "wxecho", secret = "the-secret-0123456789" }):token())
      assert.is_nil(err:find("the-secret-0123456789", 1, true))
      assert.is_nil((details.errmsg or ""):find("the-secret-0123456789", 1, true))
    end)

    it("a video_url to the metadata address is refused, and not http(s) is not followed", function()
      local c = odd({ access_token = "tok_metadata", allow_private_urls = false })
      fails("blocked", c:get("any", dir .. "/meta.mp4"))
      fails("api", odd({ access_token = "tok_ftp" }):get("any", dir .. "/ftp.mp4"))
      assert.is_nil(helper.read(dir .. "/meta.mp4"))
    end)
  end)

  describe("odd values from a caller", function()
    it("raise a bad-option message, not an error deep inside", function()
      assert.has_error(function() client({ limits = { image = "x" } }) end,
        "bad option 'limits' to 'new' (image: a number of bytes > 0 expected, got string)")
      assert.has_error(function() client({ limits = { picture = 10 } }) end,
        "bad option 'limits' to 'new' (unknown media type 'picture')")
      local c = client({ now = function() return nil end })
      assert.has_error(function() c:token() end,
        "bad option 'now' to 'new' (a function returning seconds expected; it returned nil)")
      assert.has_error(function() client({ reuse_margin = 0 / 0 }) end)
    end)
  end)

  it("no message holds a token or the secret", function()
    assert.is_true(#messages > 10)
    for _, m in ipairs(messages) do
      assert.is_nil(m:find(helper.SECRET, 1, true), m)
      assert.is_false(helper.holds_token(m), m)
    end
  end)
end)
