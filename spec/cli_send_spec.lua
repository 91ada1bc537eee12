-- `wxmedia send`, run as users run it (a child process in a clean environment) against the
-- emulator: a customer-service message to a user who wrote, with a medium uploaded (or reused)
-- first; what the user received, the messages and exit statuses when WeChat or the input says no.
local helper = require "helper"
local cli = require "cli_helper"
local cjson = require "cjson.safe"

describe("wxmedia send", function()
  local emu, tmp, creds

  setup(function()
    emu = helper.start_emulator()
    tmp = helper.tmpdir()
    creds = cli.creds(emu, { XDG_CACHE_HOME = tmp .. "/cache" })
  end)

  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(tmp)
  end)

  before_each(function()
    emu:reset()
    helper.sh("rm -rf " .. helper.shell_quote(tmp .. "/cache"))
  end)

  local function run(args, opts)
    return cli.run(tmp, args, creds, nil, opts)
  end

  -- A user who wrote to the account just now (customer-service messages reach only them).
  local function user()
    return emu:user_message { msg_type = "text", content = "hello" }.openid
  end

  it("uploads the file, sends it, and prints its media_id; the user receives it", function()
    local openid = user()
    local r = run({ "send", openid, "image", cli.fixture("image.png") })
    assert.equal(0, r.code, r.err)
    assert.equal("", r.err)
    local media_id = r.out:match("^([%w_%-]+)\n$")
    assert.is_string(media_id)
    local received = emu:received(openid)
    assert.equal(1, #received)
    assert.equal("custom", received[1].via)
    assert.same({ media_id = media_id }, received[1].image)
    -- a voice and a video the same way; a text prints nothing
    assert.equal(0, run({ "send", openid, "voice", cli.fixture("voice.amr") }).code)
    assert.equal(0, run({ "send", openid, "video", cli.fixture("video.mp4") }).code)
    r = run({ "send", openid, "text", "Your report is ready ]]> <b>" })
    assert.equal(0, r.code, r.err)
    assert.equal("", r.out)
    received = emu:received(openid)
    assert.same({ "image", "voice", "video", "text" }, { received[1].msgtype, received[2].msgtype,
      received[3].msgtype, received[4].msgtype })
    assert.equal("Your report is ready ]]> <b>", received[4].text.content)
    -- a text that begins with '-' goes after --
    assert.equal(0, run({ "send", "--", openid, "text", "-1 point" }).code)
    assert.equal("-1 point", emu:received(openid)[5].text.content)
  end)

  it("reuses the recorded media_id with --reuse, and reads the file from stdin with -", function()
    local openid = user()
    local first = run({ "send", "--reuse", openid, "image", cli.fixture("image.jpg") })
    assert.equal(0, first.code, first.err)
    assert.matches("^[%w_%-]+  uploaded\n$", first.out)
    local again = run({ "send", "--reuse", openid, "image", cli.fixture("image.jpg") })
    assert.equal(first.out:gsub("uploaded", "reused"), again.out)
    assert.equal(1, #emu:requests("upload"))
    assert.equal(2, #emu:received(openid))
    local piped = run({ "send", openid, "image", "-" },
      { stdin = "<" .. helper.shell_quote(cli.fixture("image.gif")) })
    assert.equal(0, piped.code, piped.err)
    assert.equal(2, #emu:requests("upload"))
    assert.equal(3, #emu:received(openid))
  end)

  it("gives JSON with --json", function()
    local openid = user()
    local r = run({ "--json", "send", openid, "image", cli.fixture("image.png") })
    assert.equal(0, r.code, r.err)
    local doc = cjson.decode(r.out)
    assert.equal(openid, doc.openid)
    assert.equal("image", doc.type)
    assert.is_true(doc.sent)
    assert.equal(emu:received(openid)[1].image.media_id, doc.media_id)
  end)

  it("says what WeChat refused, with exit status 3, and still prints the media_id it uploaded", function()
    local openid = user()
    emu:clock(48 * 3600 + 60)
    local r = run({ "send", openid, "image", cli.fixture("image.png") })
    assert.equal(3, r.code)
    assert.matches("^[%w_%-]+\n$", r.out)
    assert.equal(1, r.err:find("wxmedia: cannot send a message to " .. openid .. ": ", 1, true))
    assert.matches("48 hours", r.err)
    assert.equal(1, select(2, r.err:gsub("\n", "")))
    -- not a user of the account
    r = run({ "--json", "send", "oNeverWroteNeverWrote0000000", "text", "hi" })
    assert.equal(3, r.code)
    local doc = cjson.decode(r.out)
    assert.equal(40003, doc.error.errcode)
    assert.equal("api", doc.error.kind)
    assert.same({}, emu:received(openid))
  end)

  it("refuses bad words before anything is sent, with exit status 2", function()
    local openid = user()
    for _, case in ipairs({
      { { "send", openid, "image" },
        "send needs an OPENID, a TYPE and a FILE (or the TEXT of a text message), not 2 words" },
      { { "send", "not an openid", "text", "hi" }, "'not an openid' is not an openid" },
      { { "send", openid, "imgae", "x.jpg" }, "unknown message type 'imgae'; did you mean 'image'? (image, "
        .. "text, video or voice)" },
      { { "send", openid, "music", "x.mp3" }, "unknown message type 'music'" },
      { { "send", openid, "text", "" }, "the TEXT is empty" },
      { { "send", openid, "image", cli.fixture("README.md") }, "cannot upload " .. cli.fixture("README.md")
        .. " as image: it is not a format WeChat accepts" },
      { { "get", "--reuse", "x" }, "option '--reuse' is for upload and send only" },
    }) do
      local r = run(case[1])
      assert.equal(2, r.code, table.concat(case[1], " "))
      assert.matches(case[2], r.err, 1, true)
    end
    assert.equal(0, #emu:requests("upload"))
    assert.equal(0, #emu:requests("custom_send"))
    assert.matches("send OPENID text TEXT", run({ "help", "send" }).out, 1, true)
  end)
end)
