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

  -- Every value a caller gives each builder, as a function of that one value (the others valid).
  local FIELDS = {
    { "text", "content", function(msg, v) return reply.text(msg, v, 1700000001) end },
    { "image", "media_id", function(msg, v) return reply.image(msg, v, 1700000001) end },
    { "voice", "media_id", function(msg, v) return reply.voice(msg, v, 1700000001) end },
    { "video", "media_id", function(msg, v) return reply.video(msg, v, "t", "d", 1700000001) end },
    { "video", "title", function(msg, v) return reply.video(msg, "M", v, "d", 1700000001) end },
    { "video", "description", function(msg, v) return reply.video(msg, "M", "t", v, 1700000001) end },
  }
  for _, name in ipairs({ "title", "description", "music_url", "hq_music_url", "thumb_media_id" }) do
    FIELDS[#FIELDS + 1] = { "music", name, function(msg, v)
      local music = { title = "t", description = "d", music_url = "http://x/y.mp3", hq_music_url = "http://x/z.mp3",
        thumb_media_id = "THUMB" }
      music[name] = v
      return reply.music(msg, music, 1700000001)
    end }
  end
  FIELDS[#FIELDS + 1] = { "text", "msg.FromUserName", function(msg, v)
    return reply.text({ ToUserName = msg.ToUserName, FromUserName = v }, "hi", 1700000001)
  end }

  it("refuses a value XML cannot carry, naming the field and the byte: kind input, never malformed XML", function()
    local lom = require "lxp.lom"
    local msg = assert(reply.parse(INCOMING))
    -- the byte at fault is the 3rd of each value
    local BAD = {
      { "ab\7c", "a control character (U+0007)" }, { "ab\0c", "a control character (U+0000)" },
      { "ab\27[31m", "a control character (U+001B)" },
      { "ab\255c", "not UTF-8" }, { "ab\128c", "not UTF-8" }, { "ab\228\184", "not UTF-8" },
      { "ab\237\160\128c", "not UTF-8" },                 -- U+D800, a surrogate
      { "ab\192\128c", "not UTF-8" }, { "ab\224\128\128c", "not UTF-8" },  -- overlong NUL
      { "ab\244\144\128\128c", "not UTF-8" },            -- above U+10FFFF
      { "ab\239\191\190c", "U+FFFE" }, { "ab\239\191\191c", "U+FFFF" },
    }
    for _, f in ipairs(FIELDS) do
      for _, bad in ipairs(BAD) do
        local label = f[1] .. " " .. f[2] .. " " .. bad[2]
        local xml, err, details = f[3](msg, bad[1])
        if xml then
          -- what the builder made must at least be XML that expat reads
          assert.is_table(lom.parse(xml), label)
        end
        assert.is_nil(xml, label)
        assert.equal("cannot build the " .. f[1] .. " reply: " .. f[2], err:sub(1, #("cannot build the " .. f[1]
          .. " reply: " .. f[2])), label)
        assert.matches(bad[2], err, 1, true)
        assert.matches("at byte 3", err, 1, true)
        assert.equal("input", details.kind, label)
        assert.equal(f[2], details.field, label)
        assert.equal(3, details.position, label)
      end
    end
  end)

  it("keeps any text XML can carry exactly as it was: CJK, emoji, tab, newline, ]]>, DEL, U+FFFD", function()
    local lom = require "lxp.lom"
    local msg = assert(reply.parse(INCOMING))
    local value = "你好，世界 😀🀄 tab\there\nline ]]> end ]]]]> \127 \194\133 \239\191\189 \238\128\128 "
      .. "\244\143\191\191 \237\159\191"
    for _, f in ipairs(FIELDS) do
      local xml = assert(f[3](msg, value), f[1] .. " " .. f[2])
      assert.is_table(lom.parse(xml), f[1] .. " " .. f[2])
      local back = assert(reply.parse(xml))
      local element = ({ content = "Content", media_id = "MediaId", title = "Title", description = "Description",
        music_url = "MusicUrl", hq_music_url = "HQMusicUrl", thumb_media_id = "ThumbMediaId",
        ["msg.FromUserName"] = "ToUserName" })[f[2]]
      local wrap = ({ image = "Image", voice = "Voice", video = "Video", music = "Music" })[f[1]]
      local got = (wrap and f[2] ~= "msg.FromUserName") and back[wrap][element] or back[element]
      assert.equal(value, got, f[1] .. " " .. f[2])
    end
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
