-- wxmedia.store: the memory store, the adapter for any get/set object, and the file store shared by
-- processes (two processes that need a token at the same time fetch it once between them).
local helper = require "helper"
local store = require "wxmedia.store"

describe("wxmedia.store", function()
  describe("memory", function()
    it("gets what was set until its ttl runs out, and forgets deleted keys", function()
      local t = 1000
      local m = store.memory({ now = function() return t end })
      assert.is_nil(m:get("k"))
      m:set("k", "v", 10)
      m:set("forever", "f")
      assert.are.equal("v", m:get("k"))
      t = 1009
      assert.are.equal("v", m:get("k"))
      t = 1010
      assert.is_nil(m:get("k"))
      assert.are.equal("f", m:get("forever"))
      m:delete("forever")
      assert.is_nil(m:get("forever"))
      assert.truthy(m:lock("k", 1)):unlock()
    end)
  end)

  describe("wrap", function()
    it("adapts an object with get and set only", function()
      local data, ttls = {}, {}
      local obj = {
        get = function(_, k) return data[k] end,
        set = function(_, k, v, ttl) data[k], ttls[k] = v, ttl; return true end,
      }
      local s = store.wrap(obj)
      s:set("a", "1", 60)
      assert.are.equal("1", s:get("a"))
      assert.are.equal(60, ttls.a)
      s:delete("a")
      assert.is_nil(s:get("a"))
      assert.is_nil(s.lock)
    end)

    it("reads non-string answers as no value and passes lock through", function()
      local locked
      local s = store.wrap({
        get = function() return false end, set = function() end,
        lock = function(_, k, t) locked = { k, t }; return { unlock = function() end } end,
      })
      assert.is_nil(s:get("x"))
      assert.truthy(s:lock("x", 3))
      assert.are.same({ "x", 3 }, locked)
    end)

    it("raises for something that is not a store", function()
      assert.has_error(function() store.wrap(42) end,
        "bad store (a store with get and set methods expected, got number)")
      assert.has_error(function() store.wrap({ get = function() end }) end)
    end)
  end)

  describe("file", function()
    local dir, emu
    setup(function()
      dir = helper.tmpdir()
      emu = helper.start_emulator()
    end)
    teardown(function()
      if emu then emu:stop() end
      helper.rmtree(dir)
    end)
    before_each(function() emu:reset() end)

    it("shares values between store objects on one file, with ttl, leaving no temp file", function()
      local t = 5000
      local path = dir .. "/a.json"
      local a = store.file(path, { now = function() return t end })
      local b = store.file(path, { now = function() return t end })
      assert.is_nil(a:get("k"))
      assert.truthy(a:set("k", "v1", 100))
      assert.truthy(b:set("other", "v2"))
      assert.are.equal("v1", b:get("k"))
      assert.are.equal("v2", a:get("other"))
      t = 5100
      assert.is_nil(b:get("k"))
      a:delete("other")
      assert.is_nil(b:get("other"))
      for _, name in ipairs(helper.ls(dir)) do
        assert.is_nil(name:find("tmp", 1, true), name)
      end
    end)

    it("keeps a damaged file aside as .corrupt, says so, and starts anew", function()
      local path = helper.write(dir .. "/bad.json", "{ not json")
      local s = store.file(path)
      local v, why = s:get("k")
      assert.is_nil(v)
      assert.matches("is damaged", why, 1, true)
      local ok, warning = s:set("k", "v", 60)
      assert.is_true(ok)
      assert.matches("kept aside as " .. path .. ".corrupt", warning, 1, true)
      assert.are.equal("{ not json", helper.read(path .. ".corrupt"))
      assert.are.equal("v", store.file(path):get("k"))
    end)

    it("makes its file and lock files private (0600), whatever the umask", function()
      local path = dir .. "/private.json"
      local code = ([[
        package.path = %q .. "/lua/?.lua;" .. package.path
        local s = require("wxmedia.store").file(%q)
        assert(s:set("k", "v", 60))
        local l = assert(s:lock("wxmedia:token:stable:wx1", 1))
        l:unlock()
      ]]):format(helper.root, path)
      local cpath = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so"
      local _, ok = helper.sh(("umask 000; LUA_CPATH=%s %s -e %s"):format(helper.shell_quote(cpath .. ";;"),
        helper.lua, helper.shell_quote(code)))
      assert.is_true(ok)
      local modes = helper.sh("stat -c '%a %n' " .. helper.shell_quote(path) .. "*")
      local n = 0
      for mode, name in modes:gmatch("(%d+) ([^\n]+)") do
        assert.are.equal("600", mode, name)
        n = n + 1
      end
      assert.are.equal(3, n)   -- the store, its writers' lock, the key's lock
    end)

    it("never writes through a symbolic link planted at its path, its temp or its lock files", function()
      local victim = helper.write(dir .. "/victim.txt", "precious")
      local path = dir .. "/linked.json"
      assert(os.execute("ln -s " .. helper.shell_quote(victim) .. " " .. helper.shell_quote(path)))
      local s = store.file(path)
      local v, why = s:get("k")
      assert.is_nil(v)
      assert.matches("is a symbolic link", why, 1, true)
      local ok, err = s:set("k", "v", 60)
      assert.is_nil(ok)
      assert.matches("symbolic link", err, 1, true)
      assert.are.equal("precious", helper.read(victim))

      -- the old fixed temp name and the lock files, planted as links
      local path2 = dir .. "/plain.json"
      for _, name in ipairs({ path2 .. ".tmp", path2 .. ".lock" }) do
        os.execute("ln -s " .. helper.shell_quote(victim) .. " " .. helper.shell_quote(name))
      end
      local s2 = store.file(path2)
      ok, err = s2:set("k", "v", 60)
      assert.is_nil(ok)                      -- the writers' lock is a link: refused, not followed
      assert.is_string(err)
      assert.are.equal("precious", helper.read(victim))
      os.remove(path2 .. ".lock")
      assert.is_true((s2:set("k", "v", 60)))  -- the .tmp link is never used: temp names are new files
      assert.are.equal("precious", helper.read(victim))
      assert.are.equal("v", s2:get("k"))
    end)

    it("a client on an unusable store warns once and goes on without the cache", function()
      local warnings = {}
      local wxmedia = require "wxmedia"
      local c = assert(wxmedia.new({ appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
        token_store = store.file(dir), on_warning = function(m) warnings[#warnings + 1] = m end }))
      for _ = 1, 3 do assert(c:upload("image", helper.fixture("image.jpg"))) end
      assert.are.equal(3, #emu:requests("upload"))
      assert.is_true(#emu:requests("stable_token") >= 1)
      assert.is_true(#warnings >= 1)
      local seen = {}
      for _, m in ipairs(warnings) do
        assert.is_nil(seen[m], "the same warning twice within a minute: " .. m)
        seen[m] = true
      end
      assert.matches("is a directory", warnings[1], 1, true)
      -- nothing waited for the lock: no warning says so
      for _, m in ipairs(warnings) do assert.is_nil(m:find("was not had within", 1, true), m) end
    end)

    it("a store whose methods raise costs no lock and no call: the caller warns and goes on", function()
      local warnings = {}
      local raising = {
        get = function() error("store down") end,
        set = function() error("store down") end,
        lock = function() error("store down") end,
      }
      local wxmedia = require "wxmedia"
      local c = assert(wxmedia.new({ appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
        token_store = raising, on_warning = function(m) warnings[#warnings + 1] = m end }))
      assert(c:upload("image", helper.fixture("image.jpg")))
      assert(c:media_id("image", helper.fixture("image.png")))
      assert.matches("store down", warnings[1], 1, true)
    end)

    it("locks a key across processes", function()
      local path = dir .. "/locked.json"
      local s = store.file(path)
      local l = assert(s:lock("wxmedia:token:stable:wx1", 5))
      -- another process cannot take the same key's lock while we hold it
      local code = ([[
        package.path = %q .. "/lua/?.lua;" .. package.path
        local s = require("wxmedia.store").file(%q)
        local l, _, details = s:lock("wxmedia:token:stable:wx1", 0.3)
        io.write(l and "locked" or ("refused " .. tostring(details and details.kind)))
      ]]):format(helper.root, path)
      local cpath = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so"
      local cmd = ("LUA_CPATH=%s %s -e %s"):format(helper.shell_quote(cpath .. ";;"), helper.lua,
        helper.shell_quote(code))
      assert.are.equal("refused timeout", (helper.sh(cmd)))
      l:unlock()
      assert.are.equal("locked", (helper.sh(cmd)))
    end)

    it("lets two processes that need a token at once fetch it once between them", function()
      local path = dir .. "/tokens.json"
      local script = helper.write(dir .. "/child.lua", ([[
        package.path = %q .. "/lua/?.lua;" .. package.path
        local wxmedia = require "wxmedia"
        local c = assert(wxmedia.new({ appid = %q, secret = %q, base_url = %q,
          token_store = wxmedia.store.file(%q) }))
        for _ = 1, 5 do
          assert(c:upload("image", %q))
        end
        io.write("ok")
      ]]):format(helper.root, helper.APPID, helper.SECRET, emu.base_url, path, helper.fixture("image.jpg")))
      local cpath = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so"
      local one = ("LUA_CPATH=%s %s %s"):format(helper.shell_quote(cpath .. ";;"), helper.lua,
        helper.shell_quote(script))
      -- both start together; each prints ok when done
      local out = helper.sh("(" .. one .. " & " .. one .. " & wait) 2>&1")
      assert.are.equal("okok", out)
      assert.are.equal(1, #emu:requests("stable_token"))
      assert.are.equal(10, #emu:requests("upload"))
      local text = helper.read(path)
      assert.is_nil(text:find(helper.SECRET, 1, true))
    end)
  end)
end)
