-- wxmedia.core under signals, in child processes (issue 14 #4 and #5, issue 13 #5): Ctrl-C stops a
-- long download at once in a plain lua script (no progress function), SIGTERM leaves no temp file
-- once core.remove_temp_files_on_signals() was called, and a download into a pipe whose reader
-- went away dies of SIGPIPE like any Unix filter. The emulator drips the file slowly, so the
-- signal always lands in the middle of the transfer.
local helper = require "helper"

local q = helper.shell_quote

describe("wxmedia.core under signals", function()
  local emu, token, image_id, dir, work

  setup(function()
    emu = helper.start_emulator()
    token = emu:token()
    local _, res = emu:upload_with_curl(token, "image", helper.fixture("image.jpg"))
    image_id = assert(res.media_id)
  end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function()
    dir = helper.tmpdir()      -- the destination's folder
    work = helper.tmpdir()     -- the child's pid, exit status and stderr
  end)
  after_each(function()
    helper.rmtree(dir)
    helper.rmtree(work)
  end)

  local build = helper.root .. "/build/" .. (helper.lua == "luajit" and "luajit" or "lua5.4") .. "/?.so"

  -- Lua code for the child: downloads image_id to dest on a session with no low-speed limit.
  local function download_code(dest, on_signals)
    return ([[
      package.cpath = %q .. ";" .. package.cpath
      local core = require "wxmedia.core"
      if %s then core.remove_temp_files_on_signals() end
      local s = core.session{ base_url = %q, low_speed_limit = 1 }
      local r, err = s:get(%q, %q, %q)
      print(r and "done" or err)
    ]]):format(build, tostring(on_signals), emu.base_url, token, image_id, dest)
  end

  -- Starts `lua -e code` in the background; returns its pid.
  local function spawn(code)
    local inner = helper.lua .. " -e " .. q(code) .. " >" .. q(work .. "/stdout")
      .. " 2>" .. q(work .. "/stderr") .. " & echo $! >" .. q(work .. "/pid")
      .. "; wait $!; echo $? >" .. q(work .. "/rc")
    os.execute("sh -c " .. q(inner) .. " </dev/null >/dev/null 2>&1 &")
    for _ = 1, 100 do
      local pid = (helper.read(work .. "/pid") or ""):match("^(%d+)\n")
      if pid then return pid end
      os.execute("sleep 0.05")
    end
    error("the child did not start")
  end

  local function wait_for(what, seconds)
    for _ = 1, seconds * 10 do
      local v = what()
      if v then return v end
      os.execute("sleep 0.1")
    end
  end

  local function temp_files()
    local found = {}
    for _, name in ipairs(helper.ls(dir)) do
      if name:match("^%.dest%.wxmedia%-") then found[#found + 1] = name end
    end
    return #found > 0 and found or nil
  end

  -- Whether the process catches signal n (the SigCgt mask of /proc/<pid>/status).
  local function catches(pid, n)
    local status = helper.read("/proc/" .. pid .. "/status") or ""
    local mask = status:match("SigCgt:%s*(%x+)")
    local nibble = tonumber(mask:sub(-math.floor((n - 1) / 4) - 1, -math.floor((n - 1) / 4) - 1), 16)
    return math.floor(nibble / 2 ^ ((n - 1) % 4)) % 2 == 1
  end

  local function exit_status()
    return wait_for(function() return (helper.read(work .. "/rc") or ""):match("^(%d+)\n") end, 15)
  end

  -- Starts a slow download to dest (which holds "previous content"); returns the child's pid once
  -- the temp file exists, that is, in the middle of the body.
  local function slow_download(on_signals)
    local dest = helper.write(dir .. "/dest", "previous content")
    emu:fault{ route = "get", kind = "drip", rate = 100 }      -- about 20 s for the 1980 bytes
    local pid = spawn(download_code(dest, on_signals))
    assert(wait_for(temp_files, 15), "no temp file appeared: " .. tostring(helper.read(work .. "/stderr")))
    return pid, dest, helper.mtime(dest)
  end

  it("Ctrl-C stops a download at once in a plain lua script: interrupted!, nothing renamed", function()
    local pid, dest, mtime = slow_download(false)
    os.execute("kill -INT " .. pid)
    local rc = exit_status()
    assert(rc, "the child did not stop within 15 s of SIGINT")
    assert.equal("1", rc)
    assert.matches("interrupted!", helper.read(work .. "/stderr"))
    assert.equal("previous content", helper.read(dest))
    assert.equal(mtime, helper.mtime(dest))
    assert.same({ "dest" }, helper.ls(dir))
  end)

  it("SIGTERM leaves no temp file once remove_temp_files_on_signals was called, and still kills", function()
    local pid, dest, mtime = slow_download(true)
    assert.is_true(catches(pid, 15))     -- SIGTERM
    assert.is_true(catches(pid, 1))      -- SIGHUP
    assert.is_true(catches(pid, 13))     -- SIGPIPE
    os.execute("kill -TERM " .. pid)
    assert.equal("143", exit_status())  -- 128 + 15: the exit status still names the signal
    assert.equal("previous content", helper.read(dest))
    assert.equal(mtime, helper.mtime(dest))
    assert.same({ "dest" }, helper.ls(dir))
  end)

  it("takes no signal unless asked (a library must leave them to its host)", function()
    local pid = slow_download(false)
    assert.is_false(catches(pid, 15))
    assert.is_false(catches(pid, 1))
    assert.is_false(catches(pid, 13))
    os.execute("kill -KILL " .. pid)
    assert.equal("137", exit_status())
  end)

  it("a download into a pipe is written in place, and dies of SIGPIPE when its reader leaves", function()
    -- a file larger than a pipe's buffer, so that the writer meets the closed pipe
    local big = work .. "/big.jpg"
    helper.sh("{ printf '\\377\\330\\377'; head -c 1048576 /dev/zero; } > " .. q(big))
    local _, res = emu:upload_with_curl(token, "image", big)
    local code = ([[
      package.cpath = %q .. ";" .. package.cpath
      local core = require "wxmedia.core"
      core.remove_temp_files_on_signals()
      local s = core.session{ base_url = %q }
      print(s:get(%q, %q, "/dev/stdout"))
    ]]):format(build, emu.base_url, token, assert(res.media_id))
    local out = helper.sh("cd " .. q(dir) .. " && bash -c " .. q(helper.lua .. " -e " .. q(code)
      .. " | head -c 3 | od -An -tx1; echo \"${PIPESTATUS[0]}\""))
    assert.equal(" ff d8 ff\n141\n", out)
    assert.same({}, helper.ls(dir))
    -- nor beside /dev/stdout, where a temp file would have gone had the link been replaced
    assert.equal("", (helper.sh("ls -A /dev | grep -F .wxmedia- || true"):gsub("%s+", "")))
  end)
end)
