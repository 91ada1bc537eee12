-- luacheck: no max line length
-- Replying with media (issue 15): passive replies built from an incoming message (To and From
-- swapped, CDATA safe), incoming XML read by expat, WeChat's callback signature, and
-- customer-service messages through the emulator's cgi-bin/message/custom/send, with its 48-hour
-- window and per-user limit.
local helper = require "helper"
local wxmedia = require "wxmedia"
local reply = require "wxmedia.reply"

local INCOMING = [==[<xml><ToUserName><![CDATA[gh_account]]></ToUserName>
<FromUserName><![CDATA[o_user_123]]></FromUserName><CreateTime>1700000000</CreateTime>
<MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello ]]]]><![CDATA[> world]]></Content>
<MsgId>1234567890123456</MsgId></xml>]==]

describe("wxmedia.reply", function()
  it("reads WeChat's message XML with a real parser, CDATA split included", function()
    local msg = assert(reply.parse(INCOMING))
    assert.equal("gh_account", msg.ToUserName)
    assert.equal("o_user_123", msg.FromUserName)
    assert.equal("hello ]]> world", msg.Content)
    assert.equal("1234567890123456", msg.MsgId)
  end)

  it("refuses what is not such a message: kind input, never a raise", function()
    for _, bad in ipairs({ "", "not xml", "<xml><a>1</a>", "<other><ToUserName>x</ToUserName></other>",
        '<!DOCTYPE xml [<!ENTITY e "x">]><xml><ToUserName>&e;</ToUserName></xml>',
        "<xml><ToUserName>a</ToUserName><ToUserName>b</ToUserName><FromUserName>c</FromUserName>"
          .. "<MsgType>text</MsgType></xml>",
        "<xml><ToUserName><a><b><c>deep</c></b></a></ToUserName></xml>", string.rep("<xml>", 100000) }) do
      local msg, err, details = reply.parse(bad)
      assert.is_nil(msg, bad:sub(1, 40))
      assert.is_string(err)
      assert.equal("input", details.kind)
    end
  end)

  it("builds each reply with To and From swapped, and a ]]> inside a value kept intact", function()
    local msg = assert(reply.parse(INCOMING))
    for _, xml in ipairs({
        reply.text(msg, "a ]]> b", 1700000001),
        reply.image(msg, "MEDIA_ID", 1700000001),
        reply.voice(msg, "MEDIA_ID", 1700000001),
        reply.video(msg, "MEDIA_ID", "title ]]>", "description", 1700000001),
        reply.music(msg, { thumb_media_id = "THUMB", title = "t", music_url = "http://x/y.mp3" }, 1700000001) }) do
      local back = assert(reply.parse(xml))
      assert.equal("o_user_123", back.ToUserName)
      assert.equal("gh_account", back.FromUserName)
      assert.equal("1700000001", back.CreateTime)
    end
    assert.equal("MEDIA_ID", assert(reply.parse(reply.image(msg, "MEDIA_ID"))).Image.MediaId)
    assert.equal("title ]]>", assert(reply.parse(reply.video(msg, "M", "title ]]>"))).Video.Title)
    local lom = require "lxp.lom"
    local tree = lom.parse(reply.text(msg, "a ]]> b"))
    assert.equal("a ]]> b", lom.find_elem(tree, "Content")[1] .. (lom.find_elem(tree, "Content")[2] or ""))
    local video = lom.parse(reply.video(msg, "MEDIA_ID", "title ]]>"))
    assert.equal("title ]]>", table.concat(lom.find_elem(lom.find_elem(video, "Video"), "Title")))
    assert.has_error(function() reply.image({}, "x") end)
    assert.has_error(function() reply.music(msg, {}) end)
  end)

  it("verifies WeChat's signature: hex SHA-1 of token, timestamp and nonce sorted", function()
    local token, timestamp, nonce = "tok3n", "1700000000", "987654"
    local parts = { token, timestamp, nonce }
    table.sort(parts)
    local sig = helper.sh("printf %s " .. helper.shell_quote(table.concat(parts)) .. " | sha1sum"):match("^(%x+)")
    assert.is_true(reply.verify(token, sig, timestamp, nonce))
    assert.is_true(reply.verify(token, sig:upper(), timestamp, nonce))
    assert.is_false(reply.verify(token, sig, timestamp, "987655"))
    assert.is_false(reply.verify(token, sig:sub(2), timestamp, nonce))
    assert.is_false(reply.verify(token, nil, timestamp, nonce))
  end)
end)

describe("client:send", function()
  local emu
  setup(function() emu = helper.start_emulator() end)
  teardown(function() if emu then emu:stop() end end)
  before_each(function() emu:reset() end)

  local function client()
    return assert(wxmedia.new({ appid = helper.APPID, secret = helper.SECRET, base_url = emu.base_url,
      token_store = wxmedia.store.memory(), retries = 2, sleep = function() end }))
  end

  local function user()
    local rec = emu:user_message({ appid = helper.APPID, msg_type = "text", content = "hi", wait = true })
    return rec.openid or rec.request and rec.request.openid or rec.from
  end

  it("delivers each type to a user who wrote in the last 48 hours", function()
    local c = client()
    local openid = assert(user())
    local image = assert(c:upload("image", helper.fixture("image.jpg"))).media_id
    local thumb = assert(c:upload("thumb", helper.fixture("thumb.jpg"))).media_id
    assert.is_true(c:send(openid, { type = "text", content = "hello" }))
    assert.is_true(c:send(openid, { type = "image", media_id = image }))
    assert.is_true(c:send(openid, { type = "music", thumb_media_id = thumb, title = "t" }))
    local got = emu:received(openid)
    local types = {}
    for _, m in ipairs(got) do if m.via == "custom" then types[#types + 1] = m.msgtype end end
    assert.same({ "text", "image", "music" }, types)
  end)

  it("says what 45015, 45047, 40003 and 40007 mean, and retries none of them", function()
    local c = client()
    local openid = assert(user())
    local _, _, details = c:send(openid, { type = "image", media_id = string.rep("x", 64) })
    assert.equal(40007, details.errcode)
    assert.equal(1, details.attempts)
    for i = 1, 5 do assert(c:send(openid, { type = "text", content = "n" .. i })) end
    local msg
    _, msg, details = c:send(openid, { type = "text", content = "one too many" })
    assert.equal(45047, details.errcode)
    assert.matches("until they write again", msg, 1, true)
    emu:clock(48 * 3600 + 1)
    _, msg, details = c:send(openid, { type = "text", content = "late" })
    assert.equal(45015, details.errcode)
    assert.equal("api", details.kind)
    assert.equal(1, msg:find("cannot send a message to " .. openid .. ": the user has not written", 1, true))
    _, _, details = c:send("o_nobody_at_all", { type = "text", content = "x" })
    assert.equal(40003, details.errcode)
    assert.equal(1, details.attempts)
  end)

  it("refuses a message that cannot be valid before anything is sent", function()
    local c = client()
    assert.has_error(function() c:send("o1", { type = "sticker" }) end)
    assert.has_error(function() c:send("o1", { type = "image", mediaid = "x" }) end,
      "bad argument #2 to 'send' (a image message has no field 'mediaid')")
    assert.has_error(function() c:send("o1", { type = "image" }) end,
      "bad argument #2 to 'send' (a image message needs media_id)")
    assert.has_error(function() c:send("bad openid!", { type = "text", content = "x" }) end)
    assert.same({}, emu:requests("custom_send"))
  end)
end)
