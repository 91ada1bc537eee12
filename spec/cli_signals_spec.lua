-- The command in pipes and under signals, as real child processes: a reader of `get -o -` that
-- goes away (SIGPIPE), SIGTERM and SIGHUP in the middle of a download or of reading stdin. Whatever
-- ends the run, no copy of the medium is left: not in the destination's folder, not in TMPDIR
-- (a private folder per spec here), not in /tmp. And `upload TYPE -` reads the file from stdin.
local helper = require "helper"
local cli = require "cli_helper"

local q = helper.shell_quote

describe("wxmedia command in pipes and under signals", function()
  local emu, tmp, creds, tmpdir, big

  setup(function()
    emu = helper.start_emulator()
    tmp = helper.tmpdir()
    tmpdir = tmp .. "/TMPDIR"
    assert(os.execute("mkdir " .. q(tmpdir)))
    creds = cli.creds(emu, { TMPDIR = tmpdir })
    -- a 1.5 MB JPEG of its own bytes (the sample, then padding that no other file has): bigger than
    -- a pipe's buffer, and findable by its size wherever a copy is left
    local pad = {}
    for i = 1, 1536 * 1024 / 8 do pad[i] = string.format("%08x", (i * 2654435761) % 4294967296) end
    big = helper.write(tmp .. "/big.jpg", helper.read(cli.fixture("image.jpg")) .. table.concat(pad))
  end)
  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(tmp)
  end)
  before_each(function() emu:reset() end)

  local function fresh_dir()
    local d = tmp .. "/d" .. tostring(math.random(1e9))
    assert(os.execute("mkdir " .. q(d)))
    return d
  end

  local function upload(path, mtype)
    local r = cli.run(tmp, { "upload", mtype or "image", path }, creds)
    assert.equal(0, r.code, r.err)
    return (r.out:gsub("\n$", ""))
  end

  -- Files of exactly n bytes directly in /tmp: a copy of the medium where os.tmpname() puts one.
  local function tmp_copies(n)
    local out = helper.sh("find /tmp -maxdepth 1 -type f -size " .. n .. "c 2>/dev/null | sort")
    local found = {}
    for line in out:gmatch("[^\n]+") do found[line] = true end
    return found
  end

  local function empty_soon(dir)
    local ok = pcall(cli.wait_for, dir .. " to be emptied", function() return #helper.ls(dir) == 0 end)
    assert.is_true(ok, dir .. " holds " .. table.concat(helper.ls(dir), ", "))
  end

  it("leaves no copy when the reader of get -o - goes away (head -c 10: SIGPIPE)", function()
    local id = upload(big)
    local size = #helper.read(big)
    local before = tmp_copies(size)
    local dir = fresh_dir()
    local r = cli.run(tmp, { "get", id, "-o", "-" }, creds, dir, { pipe_out = "head -c 10" })
    assert.equal(helper.read(big):sub(1, 10), r.out)
    assert.equal(141, r.code, r.err)      -- died of SIGPIPE, as a program in a pipe does
    empty_soon(tmpdir)
    assert.same({}, helper.ls(dir))
    for path in pairs(tmp_copies(size)) do
      assert.truthy(before[path], "a copy of the medium was left in " .. path)
    end
  end)

  it("leaves no temp file beside the destination on SIGTERM during get -o FILE", function()
    local id = upload(cli.fixture("image.jpg"))
    local dir = fresh_dir()
    emu:fault { route = "get", kind = "drip", rate = 100 }
    local bg = cli.start(tmp, { "get", id, "-o", dir .. "/out.jpg" }, creds)
    cli.wait_for("the download to start", function() return #helper.ls(dir) > 0 end)
    bg.kill("TERM")
    assert.equal(143, bg.wait())
    assert.same({}, helper.ls(dir))
    assert.same({}, helper.ls(tmpdir))
    cli.wait_for("the emulator to log the cut request", function() return #emu:requests("get") > 0 end)
  end)

  it("leaves nothing in TMPDIR on SIGTERM or SIGHUP during get -o -", function()
    local id = upload(cli.fixture("image.jpg"))
    for i, sig in ipairs { { "TERM", 143 }, { "HUP", 129 } } do
      emu:fault { route = "get", kind = "drip", rate = 100 }
      local dir = fresh_dir()
      local bg = cli.start(tmp, { "get", id, "-o", "-" }, creds, dir)
      -- the spool folder, then the core's temp file in it
      cli.wait_for("the download to start", function()
        local spool = helper.ls(tmpdir)[1]
        return spool ~= nil and #helper.ls(tmpdir .. "/" .. spool) > 0
      end)
      bg.kill(sig[1])
      assert.equal(sig[2], bg.wait())
      empty_soon(tmpdir)
      assert.same({}, helper.ls(dir))
      cli.wait_for("the emulator to log the cut request", function() return #emu:requests("get") >= i end)
    end
  end)

  describe("upload TYPE -", function()
    it("uploads stdin under a name from its content, and leaves no temp file", function()
      local r = cli.run(tmp, { "upload", "image", "-" }, creds, nil,
        { stdin = "<" .. q(cli.fixture("image.png")) })
      assert.equal(0, r.code, r.err)
      local id = r.out:match("^([%w_%-]+)\n$")
      assert.truthy(id, r.out)
      assert.equal("media.png", emu:requests("upload")[1].filename)
      assert.same({}, helper.ls(tmpdir))
      local copy = tmp .. "/stdin-copy.png"
      assert.equal(0, cli.run(tmp, { "get", id, "-o", copy }, creds).code)
      assert.equal(helper.read(cli.fixture("image.png")), helper.read(copy))

      -- through a pipe, among other files, with --json
      local j = cli.run(tmp, { "--json", "upload", "voice", cli.fixture("voice.amr"), "-" }, creds, nil,
        { pipe_in = "cat " .. q(cli.fixture("voice.mp3")) })
      assert.equal(0, j.code, j.err)
      assert.matches('"file":"%-"', j.out)
      assert.equal("media.mp3", emu:requests("upload")[3].filename)
      assert.same({}, helper.ls(tmpdir))
    end)

    it("refuses stdin over the type's limit without reading it all, and sends nothing", function()
      local r = cli.run(tmp, { "upload", "thumb", "-" }, creds, nil,
        { pipe_in = "head -c 1000000 /dev/zero" })
      assert.equal(2, r.code)
      assert.equal("wxmedia: cannot upload standard input: it is over 64 KB (65536 bytes), the limit for "
        .. "thumb\n", r.err)
      assert.same({}, emu:requests("upload"))
      assert.same({}, helper.ls(tmpdir))
    end)

    it("names standard input, not its temp file, when the content is refused", function()
      local r = cli.run(tmp, { "upload", "image", "-" }, creds, nil,
        { stdin = "<" .. q(cli.fixture("voice.amr")) })
      assert.equal(2, r.code)
      assert.is_nil(r.err:find(tmpdir, 1, true), r.err)
      assert.truthy(r.err:find("standard input", 1, true), r.err)
    end)

    it("leaves no temp file on SIGHUP while stdin is being read", function()
      local fifo = tmp .. "/stdin-fifo"
      assert(os.execute("mkfifo " .. q(fifo)))
      local bg = cli.start(tmp, { "upload", "image", "-" }, creds, nil, ">/dev/null <" .. q(fifo))
      local writer = assert(io.open(fifo, "wb"))
      writer:write(helper.read(cli.fixture("image.jpg")))
      writer:flush()
      -- (stdio reads 64 KB or to the end: the bytes written stay in its buffer meanwhile)
      cli.wait_for("stdin to be spooled", function()
        local spool = helper.ls(tmpdir)[1]
        return spool ~= nil and helper.read(tmpdir .. "/" .. spool .. "/stdin") ~= nil
      end)
      bg.kill("HUP")
      local rc = bg.wait()
      writer:close()
      os.remove(fifo)
      assert.equal(129, rc)
      empty_soon(tmpdir)
      assert.same({}, emu:requests("upload"))
    end)
  end)
end)
