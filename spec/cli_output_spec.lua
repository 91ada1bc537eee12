-- What the command writes: a stdout that cannot be written is a failure (exit 5, one clear line),
-- text from a server reaches the terminal as printable ASCII only (and --json output as pure ASCII
-- JSON), warnings go to stderr and leave --json's stdout one object per line.
local helper = require "helper"
local nginx_helper = require "nginx_helper"
local cli = require "cli_helper"
local cjson = require "cjson.safe"

local q = helper.shell_quote

describe("wxmedia command output", function()
  local emu, tmp, creds

  setup(function()
    emu = helper.start_emulator()
    tmp = helper.tmpdir()
    creds = cli.creds(emu, { TMPDIR = tmp })
  end)
  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(tmp)
  end)
  before_each(function() emu:reset() end)

  local function wxmedia(args, env, opts) return cli.run(tmp, args, env or creds, nil, opts) end

  local function upload(name, mtype)
    local r = wxmedia({ "upload", mtype or name:match("^%a+"), cli.fixture(name) })
    assert.equal(0, r.code, r.err)
    return (r.out:gsub("\n$", ""))
  end

  describe("a stdout that cannot be written", function()
    local FULL = "wxmedia: cannot write to standard output: no space left on device\n"

    it("fails get -o - with exit status 5 and one line", function()
      local id = upload("image.jpg")
      local r = wxmedia({ "get", id, "-o", "-" }, nil, { stdout = ">/dev/full" })
      assert.equal(5, r.code)
      assert.equal(FULL, r.err)
    end)

    it("fails upload, token, --json and --help alike: the result is lost, so is the run", function()
      for _, args in ipairs { { "upload", "image", cli.fixture("image.jpg") },
                              { "--json", "upload", "image", cli.fixture("image.jpg"),
                                cli.fixture("image.png") },
                              { "token" }, { "--help" }, { "help", "get" }, { "--version" } } do
        local r = wxmedia(args, nil, { stdout = ">/dev/full" })
        assert.equal(5, r.code, table.concat(args, " ") .. ": " .. r.err)
        assert.equal(FULL, r.err, table.concat(args, " "))
      end
      -- one upload alone, then two that go up together (upload_many) before the first line is written
      assert.equal(3, #emu:requests("upload"))
    end)

    it("fails get -o - into a pipe with no reader when SIGPIPE is ignored: 'broken pipe', exit 5", function()
      local id = upload("image.jpg")
      -- fd 4 writes into a FIFO whose only reader (fd 3) is closed before the command starts
      local fifo = tmp .. "/fifo-" .. tostring(math.random(1e9))
      local out = helper.sh("cd " .. q(tmp) .. " && mkfifo " .. q(fifo) .. " && { exec 3<>" .. q(fifo)
        .. "; exec 4>" .. q(fifo) .. "; exec 3>&-; trap '' PIPE; "
        .. cli.command({ "get", id, "-o", "-" }, creds) .. " 2>&1 >&4 </dev/null; echo \"exit:$?\"; }")
      os.remove(fifo)
      assert.equal("wxmedia: cannot write to standard output: broken pipe\nexit:5\n", out)
    end)
  end)

  describe("text from a server", function()
    local server, sdir
    setup(function()
      sdir = helper.tmpdir()
      server = nginx_helper.start({ workers = 1, thread_pool = false,
        server = ("location / { content_by_lua_file %s; }"):format(cli.root
          .. "/spec/fixtures/cli/hostile.lua") })
    end)
    teardown(function()
      if server then server:stop() end
      helper.rmtree(sdir)
    end)

    local function hostile(args)
      return cli.run(tmp, args, { WECHAT_APPID = helper.APPID, WECHAT_APPSECRET = helper.SECRET,
        WXMEDIA_BASE_URL = server.base_url, TMPDIR = tmp }, sdir)
    end

    it("reaches stderr as printable ASCII, escapes shown as \\xHH", function()
      local r = hostile({ "--retries", "0", "get", "errmsg" })
      assert.equal(3, r.code)
      assert.is_nil(r.err:find("[^\n -~]"), "a byte outside printable ASCII: " .. r.err)
      assert.truthy(r.err:find("\\x1B]0;pwned\\x07", 1, true), r.err)
      assert.truthy(r.err:find("\\xC2\\x9B2J", 1, true), r.err)
    end)

    it("reaches --json output as pure ASCII JSON, the same values, no control character", function()
      local r = hostile({ "--json", "--retries", "0", "get", "escape", "-o", sdir .. "/x.jpg" })
      assert.equal(0, r.code, r.err)
      assert.is_nil(r.out:find("[^\n -~]"), "a byte outside printable ASCII: " .. r.out)
      local o = cjson.decode(r.out)
      for _, v in ipairs { o.filename, o.content_type } do
        assert.is_nil(v:find("[%z\1-\31\127]"), v)
      end
      assert.truthy(o.filename:find("evil.jpg", 1, true), o.filename)
      -- the C core escapes C0 controls in the name it reports; a C1 control (U+009B) is ours to escape
      if o.filename:find("\194\155", 1, true) then assert.truthy(r.out:find("\\u009b"), r.out) end
      -- bytes that are not UTF-8 never reach the line raw: it stays valid JSON
      local bad = hostile({ "--json", "--retries", "0", "get", "notutf8", "-o", sdir .. "/y.jpg" })
      assert.equal(0, bad.code, bad.err)
      assert.is_nil(bad.out:find("[^\n -~]"), bad.out)
      assert.is_table(cjson.decode(bad.out))
    end)

    it("never names a file without -o with what the server sent", function()
      local d = sdir .. "/named"
      os.execute("mkdir -p " .. q(d))
      local r = cli.run(tmp, { "get", "escape" }, { WECHAT_APPID = helper.APPID,
        WECHAT_APPSECRET = helper.SECRET, WXMEDIA_BASE_URL = server.base_url }, d)
      assert.equal(0, r.code, r.err)
      assert.is_nil(r.out:find("[^\n -~]"), r.out)
      assert.same({ (r.out:gsub("\n$", "")) }, helper.ls(d))
    end)
  end)

  describe("warnings", function()
    it("go to stderr as 'wxmedia: warning: ...'; --json's stdout stays one object per line", function()
      local store = tmp .. "/store-is-a-folder"
      os.execute("mkdir -p " .. q(store))
      local r = wxmedia({ "--json", "--store", store, "upload", "image", cli.fixture("image.jpg") })
      assert.equal(0, r.code, r.err)
      local lines = {}
      for line in r.out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.equal(1, #lines, r.out)
      assert.is_string(cjson.decode(lines[1]).media_id)
      assert.matches("^wxmedia: warning: [^\n]+\n", r.err)
      assert.truthy(r.err:find(store, 1, true), r.err)
    end)
  end)
end)

describe("wxmedia.cli.output", function()
  local output = require "wxmedia.cli.output"

  it("escapes every byte outside printable ASCII", function()
    assert.equal("a\\x1B[31mb\\x07\\x7F\\xC3\\xA9~ ", output.printable("a\27[31mb\7\127\195\169~ "))
  end)

  it("writes JSON as pure ASCII, with the same values", function()
    local obj = { s = "\27\127\194\155\195\169\240\159\152\128", bad = "\255\192\128x" }
    local text = output.json(obj)
    assert.is_nil(text:find("[^ -~]"), text)
    local back = cjson.decode(text)
    assert.equal(obj.s, back.s)
    assert.equal("\239\191\189\239\191\189\239\191\189x", back.bad)
  end)

  it("raises an output error when a write or a flush fails", function()
    local failing = { write = function(self) return self end,
                      flush = function() return nil, "No space left on device" end }
    local ok, e = pcall(output.stdout(failing).write, "x")
    assert.is_false(ok)
    assert.is_true(output.is_output_error(e))
    assert.equal("cannot write to standard output: no space left on device", e.message)
  end)
end)
