-- The wxmedia command, run as a child process (as users run it) against the local emulator.
local helper = require "helper"
local cjson = require "cjson.safe"

local q = helper.shell_quote
-- absolute, since the command runs in other folders
local root = helper.sh("cd " .. q(helper.root) .. " && pwd"):gsub("\n$", "")
local function fixture(name) return root .. "/spec/fixtures/media/" .. name end
local build = helper.lua:match("luajit") and "build/luajit" or "build/lua5.4"

describe("wxmedia command", function()
  local emu, tmp, creds

  -- Runs bin/wxmedia in a clean environment (only PATH, the module paths and `env`), in `cwd`.
  -- Returns { out = stdout, err = stderr, code = exit status }.
  local function wxmedia(args, env, cwd)
    local parts = { "env", "-i", "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"),
      "LUA_PATH=" .. q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"),
      "LUA_CPATH=" .. q(root .. "/" .. build .. "/?.so;;") }
    for k, v in pairs(env or {}) do parts[#parts + 1] = k .. "=" .. q(v) end
    parts[#parts + 1] = q(helper.lua)
    parts[#parts + 1] = q(root .. "/bin/wxmedia")
    for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
    local errfile = tmp .. "/stderr.txt"
    local cmd = "cd " .. q(cwd or tmp) .. " && " .. table.concat(parts, " ") .. " 2>" .. q(errfile)
      .. " </dev/null; echo \"exit:$?\""
    local out = helper.sh(cmd)
    local body, code = out:match("^(.*)exit:(%d+)\n$")
    return { out = body, err = helper.read(errfile) or "", code = tonumber(code) }
  end

  local function json_lines(text)
    local objs = {}
    for line in text:gmatch("[^\n]+") do
      local obj = cjson.decode(line)
      assert(type(obj) == "table", "not a JSON object: " .. line)
      objs[#objs + 1] = obj
    end
    return objs
  end

  local function fresh_dir()
    local d = tmp .. "/d" .. tostring(math.random(1e9))
    assert(os.execute("mkdir " .. q(d)))
    return d
  end

  setup(function()
    emu = helper.start_emulator()
    tmp = helper.tmpdir()
    creds = { WECHAT_APPID = helper.APPID, WECHAT_APPSECRET = helper.SECRET, WXMEDIA_BASE_URL = emu.base_url }
  end)

  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(tmp)
  end)

  before_each(function()
    emu:reset()
  end)

  describe("--help", function()
    it("reads like a man page and names every exit status", function()
      local r = wxmedia({ "--help" })
      assert.equal(0, r.code)
      for _, section in ipairs { "NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "ENVIRONMENT",
                                  "EXIT STATUS", "EXAMPLES" } do
        assert.truthy(r.out:find("\n" .. section .. "\n", 1, true) or r.out:find("^" .. section .. "\n"),
          "no section " .. section)
      end
      for _, line in ipairs { "\n    2 ", "\n    3 ", "\n    4 ", "\n    5 ", "WECHAT_APPID",
                               "WECHAT_ACCESS_TOKEN", "WXMEDIA_BASE_URL", "TMPDIR", "--json", "--base-url",
                               "upload TYPE FILE" } do
        assert.truthy(r.out:find(line, 1, true), "help lacks " .. line)
      end
      assert.equal("", r.err)
    end)

    it("is pointed to on a usage error, with exit status 2", function()
      for _, args in ipairs { {}, { "frobnicate" }, { "--bogus", "token" }, { "upload", "image" },
                              { "get" }, { "get", "a", "b" }, { "token", "extra" },
                              { "--retries", "x", "token" }, { "upload", "image", "a.jpg", "-o", "x" },
                              { "get", "--reuse", "x" } } do
        local r = wxmedia(args, creds)
        assert.equal(2, r.code, table.concat(args, " "))
        assert.equal("", r.out)
        assert.matches("^wxmedia: [^\n]+\nTry 'wxmedia [%-%w ]+' for more information%.\n$", r.err)
      end
      assert.same({}, emu:requests())
    end)
  end)

  describe("upload", function()
    it("prints the media_id of one file, which get brings back byte for byte", function()
      local r = wxmedia({ "upload", "image", fixture("image.jpg") }, creds)
      assert.equal(0, r.code, r.err)
      local id = r.out:match("^([%w_%-]+)\n$")
      assert.truthy(id, "not a bare media_id: " .. r.out)
      assert.equal(1, #emu:requests("upload"))

      local copy = tmp .. "/copy.jpg"
      local g = wxmedia({ "get", id, "-o", copy }, creds)
      assert.equal(0, g.code, g.err)
      assert.equal(copy .. "\n", g.out)
      assert.equal(helper.read(fixture("image.jpg")), helper.read(copy))
    end)

    it("prints 'MEDIA_ID  FILE' for several files, in order; one JSON object per file with --json", function()
      local files = { fixture("image.png"), fixture("image.gif") }
      local r = wxmedia({ "upload", "image", files[1], files[2] }, creds)
      assert.equal(0, r.code, r.err)
      local lines = {}
      for id, file in r.out:gmatch("([%w_%-]+)  ([^\n]+)\n") do lines[#lines + 1] = { id, file } end
      assert.equal(2, #lines)
      assert.equal(files[1], lines[1][2])
      assert.equal(files[2], lines[2][2])

      local j = wxmedia({ "--json", "upload", "voice", fixture("voice.amr"),
                          fixture("voice.mp3") }, creds)
      assert.equal(0, j.code, j.err)
      local objs = json_lines(j.out)
      assert.equal(2, #objs)
      assert.equal(fixture("voice.amr"), objs[1].file)
      assert.equal(fixture("voice.mp3"), objs[2].file)
      for _, o in ipairs(objs) do
        assert.equal("voice", o.type)
        assert.matches("^[%w_%-]+$", o.media_id)
        assert.is_number(o.created_at)
        assert.is_nil(o.error)
      end
    end)

    it("gives a thumb's thumb_media_id in --json", function()
      local j = wxmedia({ "upload", "thumb", fixture("thumb.jpg"), "--json" }, creds)
      assert.equal(0, j.code, j.err)
      local o = json_lines(j.out)[1]
      assert.equal("thumb", o.type)
      assert.matches("^[%w_%-]+$", o.thumb_media_id)
      assert.equal(o.thumb_media_id, o.media_id)
    end)

    it("tries every file, reports each failure, and exits with the first failure's status", function()
      local bad = helper.write(tmp .. "/notes.jpg", "this is text, not a JPEG\n")
      local r = wxmedia({ "--json", "upload", "image", bad, fixture("image.jpg"),
                          tmp .. "/missing.jpg" }, creds)
      assert.equal(2, r.code)
      local objs = json_lines(r.out)
      assert.equal(3, #objs)
      assert.equal(bad, objs[1].file)
      assert.equal("input", objs[1].error.kind)
      assert.matches("^[%w_%-]+$", objs[2].media_id)
      assert.equal("input", objs[3].error.kind)
      -- one line on stderr per failure, naming the file
      local lines = {}
      for line in r.err:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.equal(2, #lines, r.err)
      assert.truthy(lines[1]:find("^wxmedia: ") and lines[1]:find(bad, 1, true), lines[1])
      assert.truthy(lines[2]:find("^wxmedia: ") and lines[2]:find(tmp .. "/missing.jpg", 1, true), lines[2])
      assert.equal(1, #emu:requests("upload"))
    end)
  end)

  describe("upload --parallel", function()
    -- The first upload request the emulator gets is held HOLD seconds (a delay fault): the other
    -- files' requests are answered meanwhile if they were sent at once, after it if one at a time.
    -- Ordering and connections are asserted, not durations; HOLD only has to outlast three small
    -- uploads on loopback.
    local HOLD = 4
    local FILES = { fixture("image.jpg"), fixture("image.png"), fixture("image.gif"), fixture("thumb.jpg") }

    -- Uploads FILES with --parallel n; checks the output (every file, in order); returns the upload
    -- requests of the log (in the order they ended), the held one's place there, and the number of
    -- distinct connections they came on.
    local function upload_held(n)
      emu:fault({ route = "upload", kind = "delay", seconds = HOLD, count = 1 })
      local args = { "upload", "image", "--parallel", tostring(n) }
      for _, file in ipairs(FILES) do args[#args + 1] = file end
      local r = wxmedia(args, creds)
      assert.equal(0, r.code, r.err)
      local lines = {}
      for file in r.out:gmatch("[%w_%-]+  ([^\n]+)\n") do lines[#lines + 1] = file end
      assert.same(FILES, lines)
      local log, held, connections, seen = emu:requests("upload"), nil, 0, {}
      for i, e in ipairs(log) do
        if e.fault == "delay" then held = i end
        local c = e.worker .. ":" .. e.connection
        if not seen[c] then seen[c], connections = true, connections + 1 end
      end
      assert.equal(4, #log)
      return log, held, connections
    end

    it("4 sends 4 files at once, on 4 connections: three are answered while the first is held", function()
      local _, held, connections = upload_held(4)
      assert.equal(4, held)
      assert.equal(4, connections)
    end)

    it("1 sends them one at a time, on one connection: none before the held one is answered", function()
      local log, held, connections = upload_held(1)
      assert.equal(1, held)
      assert.equal(1, connections)
      -- the same connection, request after request (the token's may have come first on it)
      for i, e in ipairs(log) do assert.equal(log[1].connection_requests + i - 1, e.connection_requests) end
    end)
  end)

  describe("upload --reuse", function()
    it("uploads once, then prints the recorded media_id with 'reused'; one token for both runs", function()
      local store = tmp .. "/store-" .. tostring(math.random(1e9)) .. ".json"
      local first = wxmedia({ "upload", "--reuse", "--store", store, "image", fixture("image.jpg") }, creds)
      assert.equal(0, first.code, first.err)
      local id = first.out:match("^([%w_%-]+)  uploaded\n$")
      assert.truthy(id, first.out)
      local again = wxmedia({ "--store", store, "upload", "--reuse", "image", fixture("image.jpg"),
                              fixture("image.png") }, creds)
      assert.equal(0, again.code, again.err)
      local lines = {}
      for line in again.out:gmatch("[^\n]+") do lines[#lines + 1] = line end
      assert.equal(id .. "  reused  " .. fixture("image.jpg"), lines[1])
      assert.matches("^[%w_%-]+  uploaded  " .. fixture("image.png"):gsub("%p", "%%%0") .. "$", lines[2])
      assert.equal(2, #emu:requests("upload"))
      assert.equal(1, #emu:requests("stable_token"))

      local j = wxmedia({ "--json", "--store", store, "upload", "--reuse", "image", fixture("image.jpg") },
        creds)
      local o = json_lines(j.out)[1]
      assert.equal(id, o.media_id)
      assert.is_true(o.reused)
      assert.is_number(o.expires_at)
      assert.equal(2, #emu:requests("upload"))
    end)

    it("keeps its store in a private folder of XDG_CACHE_HOME or ~/.cache", function()
      local home = fresh_dir()
      local env = { HOME = home }
      for k, v in pairs(creds) do env[k] = v end
      local r = wxmedia({ "upload", "--reuse", "image", fixture("image.gif") }, env)
      assert.equal(0, r.code, r.err)
      assert.truthy(helper.read(home .. "/.cache/wxmedia/store.json"))
      assert.equal("700\n", (helper.sh("stat -c %a " .. q(home .. "/.cache/wxmedia"))))

      local xdg = fresh_dir()
      env.XDG_CACHE_HOME = xdg
      r = wxmedia({ "upload", "--reuse", "image", fixture("image.gif") }, env)
      assert.matches("  uploaded\n$", r.out)
      assert.truthy(helper.read(xdg .. "/wxmedia/store.json"))
    end)

    it("writes nothing to disk without --reuse or --store", function()
      local home = fresh_dir()
      local env = { HOME = home }
      for k, v in pairs(creds) do env[k] = v end
      assert.equal(0, wxmedia({ "upload", "image", fixture("image.gif") }, env).code)
      assert.same({}, helper.ls(home))
    end)
  end)

  describe("get", function()
    local function upload(name, mtype)
      local r = wxmedia({ "upload", mtype or name:match("^%a+"), fixture(name) }, creds)
      assert.equal(0, r.code, r.err)
      return (r.out:gsub("\n$", ""))
    end

    it("without -o writes the server's file name into the current folder, never over a file", function()
      local id = upload("image.png")
      local dir = fresh_dir()
      local r = wxmedia({ "get", id }, creds, dir)
      assert.equal(0, r.code, r.err)
      local name = r.out:match("^([^\n/]+)\n$")
      assert.truthy(name, "not a plain file name: " .. r.out)
      assert.same({ name }, helper.ls(dir))
      assert.equal(helper.read(fixture("image.png")), helper.read(dir .. "/" .. name))

      helper.write(dir .. "/" .. name, "mine")
      local again = wxmedia({ "get", id }, creds, dir)
      assert.equal(2, again.code)
      assert.matches("exists", again.err)
      assert.equal("mine", helper.read(dir .. "/" .. name))
      assert.same({ name }, helper.ls(dir))
    end)

    it("writes the bytes alone to stdout with -o -, and nothing there on failure", function()
      local id = upload("voice.mp3")
      local dir = fresh_dir()
      local r = wxmedia({ "get", id, "-o", "-" }, creds, dir)
      assert.equal(0, r.code, r.err)
      assert.equal(helper.read(fixture("voice.mp3")), r.out)
      assert.equal("", r.err)
      local bad = wxmedia({ "get", "no-such-media-id", "-o", "-" }, creds, dir)
      assert.equal(3, bad.code)
      assert.equal("", bad.out)
      assert.same({}, helper.ls(dir))
      assert.equal(2, wxmedia({ "get", id, "-o", "-", "--json" }, creds).code)
    end)

    it("brings a video back through its video_url, with details in --json", function()
      local id = upload("video.mp4")
      local out = tmp .. "/clip.mp4"
      local r = wxmedia({ "get", "--json", "-o", out, id }, creds)
      assert.equal(0, r.code, r.err)
      local o = json_lines(r.out)[1]
      assert.equal(id, o.media_id)
      assert.equal(out, o.path)
      assert.is_string(o.video_url)
      assert.equal(#helper.read(fixture("video.mp4")), o.size)
      assert.equal(helper.read(fixture("video.mp4")), helper.read(out))
    end)

    it("stops on Ctrl-C with exit status 130 and leaves no partial file", function()
      local id = upload("image.jpg")
      local dir = fresh_dir()
      -- the answer comes at 100 bytes/s: the download is still running when the signal comes
      emu:fault { route = "get", kind = "drip", rate = 100 }
      local parts = { "env", "-i", "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"),
        "LUA_PATH=" .. q(root .. "/lua/?.lua;;"), "LUA_CPATH=" .. q(root .. "/" .. build .. "/?.so;;") }
      for k, v in pairs(creds) do parts[#parts + 1] = k .. "=" .. q(v) end
      local run = table.concat(parts, " ") .. " " .. q(helper.lua) .. " " .. q(root .. "/bin/wxmedia")
        .. " get " .. q(id) .. " -o " .. q(dir .. "/out.jpg")
      local state = tmp .. "/int-" .. tostring(math.random(1e9))
      os.execute("(" .. run .. " >/dev/null 2>" .. q(state .. ".err") .. " </dev/null & echo $! >"
        .. q(state .. ".pid") .. "; wait $!; echo $? >" .. q(state .. ".rc") .. ") >/dev/null 2>&1 &")
      local function wait_for(what, check)
        for _ = 1, 600 do
          if check() then return end
          os.execute("sleep 0.05")
        end
        error("gave up waiting for " .. what)
      end
      local pid
      wait_for("the download to start", function()
        pid = (helper.read(state .. ".pid") or ""):match("%d+")
        return pid and #helper.ls(dir) > 0
      end)
      os.execute("kill -INT " .. pid)
      local ok = pcall(wait_for, "the command to stop", function() return helper.read(state .. ".rc") end)
      if not ok then os.execute("kill -KILL " .. pid .. " 2>/dev/null") end
      assert.is_true(ok)
      assert.equal("130", helper.read(state .. ".rc"):match("%d+"))
      assert.matches("interrupted", helper.read(state .. ".err"))
      assert.same({}, helper.ls(dir))
      -- the emulator logs the cut request when it notices; later specs count requests from zero
      wait_for("the emulator to log the cut request", function() return #emu:requests("get") > 0 end)
    end)

    it("writes nothing when WeChat refuses (exit 3, errcode in --json)", function()
      local dir = fresh_dir()
      local r = wxmedia({ "--json", "get", "no-such-media-id" }, creds, dir)
      assert.equal(3, r.code)
      local o = json_lines(r.out)[1]
      assert.equal("no-such-media-id", o.media_id)
      assert.equal(40007, o.error.errcode)
      assert.equal("api", o.error.kind)
      assert.same({}, helper.ls(dir))
    end)
  end)

  describe("exit status", function()
    it("is 2 for bad input and sends nothing", function()
      local cases = {
        { { "upload", "sticker", fixture("image.jpg") }, creds },
        { { "upload", "image", tmp .. "/nope.jpg" }, creds },
        { { "upload", "thumb", fixture("image.png") }, creds },
        { { "token" }, { WXMEDIA_BASE_URL = emu.base_url } },
        { { "token" }, { WECHAT_APPID = helper.APPID, WXMEDIA_BASE_URL = emu.base_url } },
        { { "--secret-file", tmp .. "/none", "--appid", helper.APPID, "token" },
          { WXMEDIA_BASE_URL = emu.base_url } },
      }
      for _, c in ipairs(cases) do
        local r = wxmedia(c[1], c[2])
        assert.equal(2, r.code, table.concat(c[1], " ") .. ": " .. r.err)
        assert.matches("^wxmedia: ", r.err)
      end
      assert.same({}, emu:requests())
    end)

    it("is 3 when WeChat refuses: bad credentials, an errcode", function()
      local r = wxmedia({ "token" }, { WECHAT_APPID = helper.APPID, WECHAT_APPSECRET = helper.SECRET2,
                                       WXMEDIA_BASE_URL = emu.base_url })
      assert.equal(3, r.code, r.err)
      assert.equal("", r.out)

      emu:fault { route = "upload", kind = "errcode", errcode = 45009 }
      local u = wxmedia({ "--json", "upload", "image", fixture("image.jpg") }, creds)
      assert.equal(3, u.code, u.err)
      assert.equal(45009, json_lines(u.out)[1].error.errcode)
      assert.equal(1, #emu:requests("upload"))
    end)

    it("is 4 for network failures: no server, HTTP 5xx", function()
      local r = wxmedia({ "--retries", "0", "--base-url", "http://127.0.0.1:1", "upload", "image",
                          fixture("image.jpg") }, creds)
      assert.equal(4, r.code, r.err)
      assert.equal("", r.out)

      emu:fault { route = "upload", kind = "status", status = 503, count = 5 }
      local u = wxmedia({ "--retries=1", "--json", "upload", "image", fixture("image.jpg") }, creds)
      assert.equal(4, u.code, u.err)
      assert.equal("http", json_lines(u.out)[1].error.kind)
      assert.equal(2, #emu:requests("upload"))
    end)
  end)

  describe("token", function()
    it("prints the token, and is the only command that does", function()
      local t = wxmedia({ "token" }, creds)
      assert.equal(0, t.code, t.err)
      local token = t.out:match("^(%S+)\n$")
      assert.truthy(token, t.out)
      local j = wxmedia({ "token", "--json" }, creds)
      assert.equal(token, json_lines(j.out)[1].access_token)

      local secret_file = helper.write(tmp .. "/secret", helper.SECRET .. "\n")
      -- the same account through flags: the stable token is the same token
      local flags = wxmedia({ "--appid", helper.APPID, "--secret-file", secret_file,
                              "--base-url", emu.base_url, "token" })
      assert.equal(0, flags.code, flags.err)
      assert.equal(token .. "\n", flags.out)
      local runs = {
        wxmedia({ "upload", "image", fixture("image.jpg") }, creds),
        wxmedia({ "--json", "upload", "image", fixture("image.jpg") }, creds),
        wxmedia({ "--json", "get", "no-such-media-id" }, creds),
        wxmedia({ "--appid", helper.APPID, "--secret-file", secret_file, "--base-url", emu.base_url,
                  "--json", "upload", "voice", fixture("image.jpg") }),
        wxmedia({ "--json", "upload", "image", fixture("image.jpg") },
          { WECHAT_ACCESS_TOKEN = token, WXMEDIA_BASE_URL = emu.base_url }),
        wxmedia({ "--json", "get", "no-such-media-id" },
          { WECHAT_ACCESS_TOKEN = token, WXMEDIA_BASE_URL = emu.base_url }),
        wxmedia({ "--retries", "0", "--base-url", "http://127.0.0.1:1", "--json", "get", "x" },
          { WECHAT_ACCESS_TOKEN = token }),
        wxmedia({ "--json", "--store", tmp .. "/token-store.json", "upload", "--reuse", "image",
                  fixture("image.jpg") }, creds),
      }
      assert.equal(0, runs[1].code, runs[1].err)
      assert.equal(0, runs[5].code, runs[5].err)
      for i, r in ipairs(runs) do
        local all = r.out .. r.err
        assert.is_nil(all:find(token, 1, true), "token printed by run " .. i)
        assert.is_nil(all:find(helper.SECRET, 1, true), "secret printed by run " .. i)
      end
    end)

    it("never repeats a rejected static token in the error (exit 3)", function()
      local bogus = "bogus_token_0123456789abcdefghij"
      local r = wxmedia({ "--json", "upload", "image", fixture("image.jpg") },
        { WECHAT_ACCESS_TOKEN = bogus, WXMEDIA_BASE_URL = emu.base_url })
      assert.equal(3, r.code, r.err)
      assert.equal("token", json_lines(r.out)[1].error.kind)
      assert.is_nil((r.out .. r.err):find(bogus, 1, true))
    end)
  end)

  describe("progress bar", function()
    -- `script` gives the command a terminal for stdout and stderr.
    local function on_terminal(args)
      local parts = { "env", "-i", "PATH=" .. q(os.getenv("PATH") or "/usr/bin:/bin"),
        "LUA_PATH=" .. q(root .. "/lua/?.lua;" .. root .. "/lua/?/init.lua;;"),
        "LUA_CPATH=" .. q(root .. "/" .. build .. "/?.so;;"),
        "WECHAT_APPID=" .. helper.APPID, "WECHAT_APPSECRET=" .. helper.SECRET,
        "WXMEDIA_BASE_URL=" .. q(emu.base_url), q(helper.lua), q(root .. "/bin/wxmedia") }
      for _, a in ipairs(args) do parts[#parts + 1] = q(a) end
      return helper.sh("script -qec " .. q(table.concat(parts, " ")) .. " /dev/null </dev/null")
    end

    local big
    setup(function()
      -- a 1.5 MB JPEG: the sample with padding after its end marker
      local jpeg = helper.read(fixture("image.jpg"))
      big = helper.write(tmp .. "/big.jpg", jpeg .. string.rep("\0", 1536 * 1024))
    end)

    it("is drawn on a terminal for a transfer over 1 MB, and never into a pipe", function()
      local tty = on_terminal { "upload", "image", big }
      assert.matches("100%%", tty)
      assert.matches("%[#+%]", tty)
      -- like curl's: the speed and the time left
      assert.matches("[%d.]+ [kM]B/s  [%d:-]+ left", tty)

      local piped = wxmedia({ "upload", "image", big }, creds)
      assert.equal(0, piped.code, piped.err)
      assert.equal("", piped.err)
      assert.is_nil(piped.out:find("%", 1, true))

      local id = piped.out:match("^(%S+)\n$")
      local copy = tmp .. "/big-copy.jpg"
      local got = on_terminal { "get", id, "-o", copy }
      assert.matches("100%%", got)
      assert.equal(helper.read(big), helper.read(copy))
    end)

    it("is not drawn for small files or with --no-progress", function()
      assert.is_nil(on_terminal({ "upload", "image", fixture("image.jpg") }):find("%", 1, true))
      assert.is_nil(on_terminal({ "--no-progress", "upload", "image", big }):find("%", 1, true))
    end)
  end)
end)

describe("wxmedia.cli functions", function()
  local cli = require "wxmedia.cli"
  local commands = require "wxmedia.cli.commands"
  local args = require "wxmedia.cli.args"

  it("reduces a server's file name to a plain name in the current folder", function()
    assert.equal("passwd", commands.safe_filename("../../etc/passwd"))
    assert.equal("c.jpg", commands.safe_filename("a/b\\c.jpg"))
    assert.equal("bashrc", commands.safe_filename(".bashrc"))
    assert.equal("rf", commands.safe_filename("-rf"))
    assert.equal("photo_2_.jpg", commands.safe_filename("photo (2).jpg"))
    assert.equal("_.jpg", commands.safe_filename("\xe7\x85\xa7\xe7\x89\x87.jpg"))
    assert.is_nil(commands.safe_filename(".."))
    assert.is_nil(commands.safe_filename("dir/"))
    assert.is_nil(commands.safe_filename(""))
    assert.is_nil(commands.safe_filename(nil))
    assert.is_nil(commands.safe_filename(string.rep("a", 300)))
  end)

  it("names a download after the media_id and content type when WeChat gives no name", function()
    assert.equal("ID.jpg",
      commands.default_output("ID", { filename = "ID.jpg", content_type = "image/jpeg" }))
    assert.equal("abc.png", commands.default_output("abc", { content_type = "image/png" }))
    assert.equal("abc.mp4", commands.default_output("abc", { video_url = "http://x/y" }))
    assert.equal("abc.bin", commands.default_output("abc", {}))
    assert.equal("passwd.bin", commands.default_output("../etc/passwd", { filename = "../.." }))
  end)

  it("draws a progress line with the speed and the time left, under 80 columns", function()
    local progress = require "wxmedia.cli.progress"
    local line = progress.line("photo.jpg", 5 * 1024 * 1024, 10 * 1024 * 1024, 1024 * 1024)
    assert.equal("\rphoto.jpg        [######......]  50%  5.0 MB / 10.0 MB  1.0 MB/s  0:05 left", line)
    assert.is_true(#line <= 80)
    assert.matches("%-%- kB/s  %-%-:%-%- left$", progress.line("x", 0, 2 * 1024 * 1024, nil))
    assert.matches("1:01:01 left$", progress.line("x", 0, 3661 * 1024, 1024))
    assert.matches(" 0:00 left$", progress.line("x", 10, 10, nil))
    assert.matches("^\r%.%.%.", progress.line(string.rep("a", 40), 1, 2, 1))
  end)

  it("measures the speed over the last seconds, from the clock it is given", function()
    local progress = require "wxmedia.cli.progress"
    local t, drawn = 0, {}
    local bar = progress.new({ write = function(_, s) drawn[#drawn + 1] = s end, flush = function() end },
      function() return true end, function() return t end)
    bar.start("f")
    local MB = 1024 * 1024
    for i = 0, 10 do
      t = i
      bar.progress(10 * MB, i * MB / 2, 0, 0)   -- 0.5 MB a second
    end
    assert.matches("512 kB/s  0:10 left$", drawn[#drawn])
  end)

  it("maps error kinds to exit statuses", function()
    assert.equal(2, cli.exit_status("input"))
    assert.equal(5, cli.exit_status("io"))
    assert.equal(3, cli.exit_status("api"))
    assert.equal(3, cli.exit_status("token"))
    for _, k in ipairs { "http", "connect", "timeout", "tls", "transfer" } do
      assert.equal(4, cli.exit_status(k))
    end
    assert.equal(130, cli.exit_status("aborted"))
    assert.equal(2, cli.exit_status("config"))
    assert.equal(1, cli.exit_status("unknown-kind"))
  end)

  it("parses options before and after the command", function()
    local o = assert(args.parse { "--json", "get", "ID", "-o", "f.jpg", "--retries=2", "--timeout", "5" })
    assert.equal("get", o.command)
    assert.same({ "ID" }, o.args)
    assert.equal("f.jpg", o.output)
    assert.equal(2, o.retries)
    assert.equal(5, o.timeout)
    assert.is_true(o.json)
    local w = assert(args.parse { "upload", "image", "--", "-odd.jpg" })
    assert.same({ "image", "-odd.jpg" }, w.args)
    assert.is_nil(args.parse { "upload", "image", "a.jpg", "--output", "x" })
    assert.is_nil(args.parse { "--json=yes", "token" })
    local id = "-" .. string.rep("a", 63)
    assert.same({ id }, assert(args.parse { "get", id }).args)
    assert.is_nil(args.parse { "get", "--bogus" })
  end)
end)
