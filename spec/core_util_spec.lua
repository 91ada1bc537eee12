-- wxmedia.core helpers for the Lua layer: stat, sha256_file, the clocks, sleep and the file lock.
local helper = require "helper"
local core = require "wxmedia.core"

describe("wxmedia.core helpers", function()
  local dir
  before_each(function() dir = helper.tmpdir() end)
  after_each(function() helper.rmtree(dir) end)

  describe("stat", function()
    it("describes a file, a directory and something else", function()
      local path = helper.write(dir .. "/a b.bin", ("x"):rep(1234))
      local st = assert(core.stat(path))
      assert.same("file", st.type)
      assert.equal(1234, st.size)
      local seconds = tonumber((helper.sh("stat -c %Y " .. helper.shell_quote(path))))
      assert.equal(seconds, math.floor(st.mtime))
      assert.equal("directory", assert(core.stat(dir)).type)
      assert.equal("other", assert(core.stat("/dev/null")).type)
    end)

    it("returns a regular file's first n bytes as head, when asked", function()
      local path = helper.write(dir .. "/h.bin", "0123456789abcdefXYZ")
      assert.is_nil(assert(core.stat(path)).head)
      assert.equal("0123456789abcdef", assert(core.stat(path, 16)).head)
      assert.equal("0123456789abcdefXYZ", assert(core.stat(path, 256)).head)
      assert.is_nil(assert(core.stat(helper.write(dir .. "/empty", ""), 16)).head)
      assert.is_nil(assert(core.stat(dir, 16)).head)
      assert.is_nil(assert(core.stat("/dev/null", 16)).head)
      assert.has_error(function() core.stat(path, 257) end)
    end)

    it("returns nil, message, input for a missing path", function()
      local st, err, kind = core.stat(dir .. "/missing")
      assert.is_nil(st)
      assert.equal("input", kind)
      assert.equal("cannot access " .. dir .. "/missing: no such file or directory", err)
    end)
  end)

  describe("lstat", function()
    it("describes the path itself: a symlink is a symlink, stat follows it", function()
      local target = helper.write(dir .. "/target", "abc")
      helper.sh("ln -s target " .. helper.shell_quote(dir .. "/link") .. " && ln -s nowhere "
        .. helper.shell_quote(dir .. "/dangling"))
      assert.equal("symlink", assert(core.lstat(dir .. "/link")).type)
      assert.equal("file", assert(core.stat(dir .. "/link")).type)
      assert.equal(3, assert(core.stat(dir .. "/link")).size)
      assert.equal("symlink", assert(core.lstat(dir .. "/dangling")).type)
      assert.equal("file", assert(core.lstat(target)).type)
      assert.equal("directory", assert(core.lstat(dir)).type)
      local st, err, kind = core.stat(dir .. "/dangling")
      assert.is_nil(st)
      assert.equal("input", kind)
      assert.equal("cannot access " .. dir .. "/dangling: no such file or directory", err)
    end)
  end)

  describe("write_private", function()
    local function mode(path)
      return (helper.sh("stat -c %a " .. helper.shell_quote(path)):gsub("%s", ""))
    end

    it("writes a new file only its owner may read, and replaces an existing one whole", function()
      local path = dir .. "/store.json"
      assert.is_true(core.write_private(path, "one"))
      assert.equal("one", helper.read(path))
      assert.equal("600", mode(path))
      helper.sh("chmod 644 " .. helper.shell_quote(path))
      assert.is_true(core.write_private(path, "two\0with a NUL"))
      assert.equal("two\0with a NUL", helper.read(path))
      assert.equal("600", mode(path))
      assert.same({ "store.json" }, helper.ls(dir))     -- no temp file left
    end)

    it("refuses a symlink (its target untouched), a directory and a FIFO: io", function()
      local target = helper.write(dir .. "/target", "precious")
      helper.sh("ln -s target " .. helper.shell_quote(dir .. "/link") .. " && mkdir "
        .. helper.shell_quote(dir .. "/sub") .. " && mkfifo " .. helper.shell_quote(dir .. "/fifo"))
      for _, case in ipairs {
        { dir .. "/link", dir .. "/link is a symbolic link" },
        { dir .. "/sub", dir .. "/sub is a directory" },
        { dir .. "/fifo", dir .. "/fifo is not a regular file" },
      } do
        local ok, err, kind = core.write_private(case[1], "data")
        assert.is_nil(ok)
        assert.equal("io", kind)
        assert.equal(case[2], err)
      end
      assert.equal("precious", helper.read(target))
      assert.same({ "fifo", "link", "sub", "target" }, helper.ls(dir))
    end)

    it("returns nil, message, io when the folder cannot be written", function()
      local ok, err, kind = core.write_private(dir .. "/missing/store.json", "data")
      assert.is_nil(ok)
      assert.equal("io", kind)
      assert.equal("cannot write " .. dir .. "/missing/store.json: no such file or directory", err)
    end)
  end)

  describe("sha256_file", function()
    local function sha256sum(path)
      return (helper.sh("sha256sum " .. helper.shell_quote(path)):match("^(%x+)"))
    end

    it("matches sha256sum on the fixtures and on edge lengths", function()
      for _, name in ipairs { "image.jpg", "image.png", "video.mp4", "voice.mp3" } do
        assert.equal(sha256sum(helper.fixture(name)), core.sha256_file(helper.fixture(name)))
      end
      -- lengths around the 64-byte block and the 56-byte padding boundary, and past the read buffer
      for _, n in ipairs { 0, 1, 55, 56, 63, 64, 65, 119, 120, 16383, 16384, 16385, 100000 } do
        local path = helper.write(dir .. "/f" .. n, ("\1abc"):rep(math.floor(n / 4) + 1):sub(1, n))
        assert.equal(sha256sum(path), core.sha256_file(path), "length " .. n)
      end
    end)

    it("knows the standard test vector", function()
      local path = helper.write(dir .. "/abc", "abc")
      assert.equal("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", core.sha256_file(path))
    end)

    it("returns nil, message, input for a missing file or a directory", function()
      local h, err, kind = core.sha256_file(dir .. "/missing")
      assert.is_nil(h)
      assert.equal("input", kind)
      assert.matches("no such file or directory", err)
      h, err, kind = core.sha256_file(dir)
      assert.is_nil(h)
      assert.equal("input", kind)
      assert.matches("is a directory", err)
    end)
  end)

  describe("clocks", function()
    it("now is monotonic, time is the wall clock, sleep sleeps", function()
      local t0 = core.now()
      core.sleep(0.05)
      local t1 = core.now()
      assert.is_true(t1 - t0 >= 0.05)
      assert.is_true(math.abs(core.time() - os.time()) <= 2)
      core.sleep(0)
      core.sleep(-1)
      assert.has_error(function() core.sleep("x") end)
    end)
  end)

  describe("lock", function()
    it("is exclusive until unlocked, and unlock is idempotent", function()
      local path = dir .. "/token.lock"
      local a = assert(core.lock(path, 1))
      assert.matches("^wxmedia%.lock %(0x%x+%)$", tostring(a))
      -- a second holder (another open file, as another process would have) waits, then gives up
      local b, err, kind = core.lock(path, 0.1)
      assert.is_nil(b)
      assert.equal("timeout", kind)
      assert.equal(path .. " is locked by another holder (waited 0.1 s)", err)
      a:unlock()
      a:unlock()
      assert.equal("wxmedia.lock (unlocked)", tostring(a))
      b = assert(core.lock(path, 0))
      b:unlock()
    end)

    it("creates the lock file 0600", function()
      local path = dir .. "/new.lock"
      local l = assert(core.lock(path, 0))
      assert.equal("600", (helper.sh("stat -c %a " .. helper.shell_quote(path)):gsub("%s", "")))
      l:unlock()
    end)

    it("is held against another process, and released when the holder is collected", function()
      local path = dir .. "/gc.lock"
      local held = { assert(core.lock(path, 0)) }
      assert.matches("^wxmedia%.lock", tostring(held[1]))
      local out = helper.sh("flock -n " .. helper.shell_quote(path) .. " true && echo free || echo held")
      assert.equal("held", (out:gsub("%s", "")))
      held[1] = nil     -- dropped, so that the collector releases it
      collectgarbage("collect")
      collectgarbage("collect")
      out = helper.sh("flock -n " .. helper.shell_quote(path) .. " true && echo free || echo held")
      assert.equal("free", (out:gsub("%s", "")))
    end)

    it("never follows a symlink nor opens a FIFO or a directory: io", function()
      local target = dir .. "/elsewhere.lock"
      helper.sh("ln -s elsewhere.lock " .. helper.shell_quote(dir .. "/link.lock") .. " && mkfifo "
        .. helper.shell_quote(dir .. "/fifo.lock") .. " && mkdir " .. helper.shell_quote(dir .. "/dir.lock"))
      for _, case in ipairs {
        { dir .. "/link.lock", dir .. "/link.lock is a symbolic link" },
        { dir .. "/fifo.lock", dir .. "/fifo.lock is not a regular file" },
        { dir .. "/dir.lock", "cannot open " .. dir .. "/dir.lock: is a directory" },
      } do
        local l, err, kind = core.lock(case[1], 0)
        assert.is_nil(l)
        assert.equal("io", kind)
        assert.equal(case[2], err)
      end
      assert.is_nil(helper.read(target))       -- the link's target was not created
    end)

    it("returns nil, message, io when the file cannot be opened", function()
      local l, err, kind = core.lock(dir .. "/missing/x.lock", 0)
      assert.is_nil(l)
      assert.equal("io", kind)
      assert.matches("no such file or directory", err)
    end)
  end)
end)
