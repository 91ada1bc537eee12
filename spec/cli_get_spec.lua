-- `wxmedia get MEDIA_ID` without -o: the file's name comes from WeChat's answer and is chosen
-- before the body is downloaded; a name that exists in any form (a file, one we cannot read, a
-- dangling link) is refused then, and never replaced. With -o FILE the file is replaced.
local helper = require "helper"
local cli = require "cli_helper"

local q = helper.shell_quote

describe("wxmedia get without -o", function()
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

  local function fresh_dir()
    local d = tmp .. "/d" .. tostring(math.random(1e9))
    assert(os.execute("mkdir " .. q(d)))
    return d
  end

  -- the emulator names a file "<media_id>.<ext>"; a media_id may start with '-', which the command
  -- drops from a name (commands.safe_filename)
  local function server_name(id, ext)
    return require("wxmedia.cli.commands").safe_filename(id .. "." .. ext)
  end

  local function upload(name)
    local r = cli.run(tmp, { "upload", name:match("^%a+"), cli.fixture(name) }, creds)
    assert.equal(0, r.code, r.err)
    return (r.out:gsub("\n$", ""))
  end

  it("refuses an existing name before the body comes, and downloads nothing more", function()
    local id = upload("image.jpg")
    local dir = fresh_dir()
    local name = server_name(id, "jpg")
    helper.write(dir .. "/" .. name, "mine")
    -- 400 bytes a second: the whole body would take 5 s; the name is known with the first bytes
    emu:fault { route = "get", kind = "drip", rate = 400 }
    local r = cli.run(tmp, { "get", id }, creds, dir)
    assert.equal(2, r.code)
    assert.equal("wxmedia: cannot get " .. id .. ": " .. name
      .. " already exists; not replacing it (choose another name with -o)\n", r.err)
    assert.equal("", r.out)
    assert.equal("mine", helper.read(dir .. "/" .. name))
    assert.same({ name }, helper.ls(dir))
    cli.wait_for("the emulator to log the cut request", function() return #emu:requests("get") > 0 end)
    local sent = emu:requests("get")[1].bytes_out
    assert.is_true(sent < #helper.read(cli.fixture("image.jpg")), "the server sent " .. sent .. " bytes")
  end)

  it("never replaces a name that exists as a dangling symbolic link", function()
    local id = upload("image.png")
    local dir = fresh_dir()
    local name = server_name(id, "png")
    assert(os.execute("ln -s nowhere " .. q(dir .. "/" .. name)))
    local r = cli.run(tmp, { "get", id }, creds, dir)
    assert.equal(2, r.code)
    assert.matches("already exists", r.err)
    assert.equal("nowhere\n", (helper.sh("readlink " .. q(dir .. "/" .. name))))
    assert.same({ name }, helper.ls(dir))
  end)

  it("never replaces a file it cannot read", function()
    local id = upload("image.gif")
    local dir = fresh_dir()
    local name = server_name(id, "gif")
    helper.write(dir .. "/" .. name, "secret")
    os.execute("chmod 000 " .. q(dir .. "/" .. name))
    local r = cli.run(tmp, { "get", id }, creds, dir)
    os.execute("chmod 600 " .. q(dir .. "/" .. name))
    assert.equal(2, r.code)
    assert.equal("secret", helper.read(dir .. "/" .. name))
    assert.same({ name }, helper.ls(dir))
  end)

  it("names a video after its media_id and .mp4, and refuses it when it exists", function()
    local id = upload("video.mp4")
    local dir = fresh_dir()
    local r = cli.run(tmp, { "get", id }, creds, dir)
    assert.equal(0, r.code, r.err)
    local name = r.out:gsub("\n$", "")
    assert.matches("%.mp4$", name)
    assert.equal(helper.read(cli.fixture("video.mp4")), helper.read(dir .. "/" .. name))
    local again = cli.run(tmp, { "get", id }, creds, dir)
    assert.equal(2, again.code)
    assert.matches("already exists", again.err)
    assert.same({ name }, helper.ls(dir))
  end)

  it("replaces the file named with -o, as documented", function()
    local id = upload("image.jpg")
    local dir = fresh_dir()
    helper.write(dir .. "/out.jpg", "old")
    local r = cli.run(tmp, { "get", id, "-o", "out.jpg" }, creds, dir)
    assert.equal(0, r.code, r.err)
    assert.equal("out.jpg\n", r.out)
    assert.equal(helper.read(cli.fixture("image.jpg")), helper.read(dir .. "/out.jpg"))
    assert.same({ "out.jpg" }, helper.ls(dir))
  end)
end)
