-- The README's nginx configurations and their Lua modules, run as written in a real nginx (always
-- LuaJIT, hence #once) against the emulator: the OpenResty section's (upload, download, status) and
-- the callback of "Replying with media". A README example that does not work fails here.
--
-- What changes, and only that: nginx's own files go below a private prefix (daemon, pid, error
-- log, temp folders, access log; "user root" when the specs run as root, as nginx_helper does),
-- `listen 8080` becomes a free loopback port, and the two lua_package_* lines point at this tree
-- (lua/, build/luajit/) and at a temp folder holding the modules the README puts in /etc/nginx/lua
-- (each named by its block's first line). The environment nginx starts with holds the account,
-- WXMEDIA_BASE_URL (the emulator) and WXMEDIA_CALLBACK_TOKEN.
local helper = require "helper"
local nginx_helper = require "nginx_helper"
local cjson = require "cjson.safe"

local q = helper.shell_quote
local TOKEN = "ReadmeCallbackToken1"

-- The README's fenced blocks, in order: { lang =, text = }.
local function blocks()
  local out = {}
  local readme = assert(helper.read(helper.root .. "/README.md"))
  for lang, text in readme:gmatch("\n```(%w*)\n(.-)\n```") do
    out[#out + 1] = { lang = lang, text = text }
  end
  return out
end

-- The nginx block holding `marker`, and the Lua modules the README puts in /etc/nginx/lua.
local function example(marker)
  local conf, modules = nil, {}
  for _, b in ipairs(blocks()) do
    if b.lang == "nginx" and b.text:find(marker, 1, true) then conf = b.text end
    local name = b.lang == "lua" and b.text:match("^%-%- /etc/nginx/lua/([%w_]+)%.lua\n")
    if name then modules[name] = b.text end
  end
  assert(conf, "no nginx block in README.md holds " .. marker)
  return conf, modules
end

-- The README's nginx.conf, with the changes said above.
local function adapted(conf, prefix, port, lua_dir)
  local root = (helper.sh("realpath " .. q(helper.root)):gsub("%s+$", ""))
  local main = { "daemon on;", "pid " .. prefix .. "/nginx.pid;",
    "error_log " .. prefix .. "/error.log info;", nginx_helper.running_as_root() and "user root;" or "" }
  local paths = {}
  for _, t in ipairs({ "client_body", "proxy", "fastcgi", "uwsgi", "scgi" }) do
    paths[#paths + 1] = ("    %s_temp_path %s/%s;"):format(t, prefix, t)
  end
  paths[#paths + 1] = "    access_log " .. prefix .. "/access.log;"
  local function once(text, pattern, replacement)
    local out, n = text:gsub(pattern, function() return replacement end)
    assert(n == 1, "README's nginx.conf: expected one " .. pattern .. ", found " .. n)
    return out
  end
  conf = once(conf, "\n%s*listen 8080;", "\n        listen 127.0.0.1:" .. port .. ";")
  conf = once(conf, "\nhttp {\n", "\nhttp {\n" .. table.concat(paths, "\n") .. "\n")
  conf = once(conf, "\n%s*lua_package_path [^\n]*", ('\n    lua_package_path "%s/lua/?.lua;'
    .. '%s/lua/?/init.lua;/usr/share/lua/5.1/?.lua;%s/?.lua;;";'):format(root, root, lua_dir))
  conf = once(conf, "\n%s*lua_package_cpath [^\n]*", ('\n    lua_package_cpath "%s/build/luajit/?.so;'
    .. '/usr/lib/x86_64-linux-gnu/lua/5.1/?.so;;";'):format(root))
  return table.concat(main, "\n") .. "\n" .. conf .. "\n"
end

describe("the README's nginx examples #once", function()
  local emu, tmp

  setup(function()
    emu = helper.start_emulator()
    tmp = helper.tmpdir()
  end)

  teardown(function()
    if emu then emu:stop() end
    helper.rmtree(tmp)
  end)

  before_each(function() emu:reset() end)

  local function start(marker)
    local conf, modules = example(marker)
    local lua_dir = helper.tmpdir()
    for name, text in pairs(modules) do helper.write(lua_dir .. "/" .. name .. ".lua", text) end
    local ngx = nginx_helper.start({
      conf = function(prefix, port) return adapted(conf, prefix, port, lua_dir) end,
      env = { WECHAT_APPID = helper.APPID, WECHAT_APPSECRET = helper.SECRET,
        WXMEDIA_BASE_URL = emu.base_url, WXMEDIA_CALLBACK_TOKEN = TOKEN },
    })
    local stop = ngx.stop
    function ngx.stop(self)
      stop(self)
      helper.rmtree(lua_dir)
    end
    return ngx
  end

  local function json(status, body)
    return status, cjson.decode(body or "")
  end

  describe("the OpenResty section's", function()
    local ngx
    setup(function() ngx = start("location = /media") end)
    teardown(function() if ngx then ngx:stop() end end)

    local function upload(args, query)
      return json(ngx:curl("/media?" .. (query or "type=image"), args))
    end

    it("uploads the file sent as the request body, small or in nginx's temp file, and serves it back",
      function()
      local status, doc = upload("--data-binary @" .. q(helper.fixture("image.jpg")))
      assert.equal(200, status)
      assert.equal("image", doc.type)
      assert.is_string(doc.media_id)
      local _, body = ngx:curl("/media/" .. doc.media_id)
      assert.equal(helper.read(helper.fixture("image.jpg")), body)
      -- larger than client_body_buffer_size: nginx keeps it in a temp file
      local big = helper.write(tmp .. "/big.jpg",
        helper.read(helper.fixture("image.jpg")) .. ("\0"):rep(200000))
      status, doc = upload("--data-binary @" .. q(big))
      assert.equal(200, status)
      assert.equal(helper.read(big), select(2, ngx:curl("/media/" .. doc.media_id)))
      assert.same({ "media.jpg", "media.jpg" }, { emu:requests("upload")[1].filename,
        emu:requests("upload")[2].filename })
      local _, text = ngx:curl("/wxmedia_status")
      assert.matches("^Threads busy: %d+ of %d+\n", text)
    end)

    it("answers a multipart form (curl -F) with 415 and what to send instead", function()
      local status, doc = upload("-F media=@" .. q(helper.fixture("image.jpg")))
      assert.equal(415, status)
      assert.equal("cannot upload the request body: it is a multipart/form-data form (curl -F); send the "
        .. "file itself as the request body: curl --data-binary @photo.jpg URL", doc.error)
      assert.equal("input", doc.kind)
      assert.equal(0, #emu:requests("upload"))
    end)

    it("answers a bad file with 400 and a message that names no path of the server",
      function()
      local junk = helper.write(tmp .. "/junk.txt", ("not an image\n"):rep(20000))
      local not_media = "cannot upload the request body as image: it is not a format WeChat accepts; "
        .. "image takes JPEG, PNG or GIF"
      for _, case in ipairs({
        { "--data-binary @" .. q(helper.fixture("README.md")), "type=image", not_media },
        -- in nginx's temp file: its path is never named
        { "--data-binary @" .. q(junk), "type=image", not_media },
        { "--data-binary @" .. q(helper.fixture("image.png")), "type=thumb",
          "cannot upload the request body as thumb: it is a PNG file; thumb takes JPEG" },
        { "-X POST", "type=image", "cannot upload the request body: it is empty" },
        { "--data-binary @" .. q(helper.fixture("image.png")), "type=sticker",
          "cannot upload the request body: unknown media type 'sticker'; use image, thumb, video or "
            .. "voice" },
      }) do
        local status, body = ngx:curl("/media?" .. case[2], case[1])
        assert.equal(400, status, case[3])
        local doc = cjson.decode(body)
        assert.equal(case[3], doc.error)
        assert.equal("input", doc.kind)
        assert.is_nil(body:find("/", 1, true), body)
      end
      assert.equal(0, #emu:requests("upload"))
    end)
  end)

  describe("the callback of Replying with media", function()
    local ngx
    setup(function() ngx = start("location = /wechat") end)
    teardown(function() if ngx then ngx:stop() end end)

    before_each(function()
      emu:config({ callbacks = { [helper.APPID] = { url = ngx.base_url .. "/wechat", token = TOKEN } } })
    end)

    it("replies to a user's messages through the emulator playing WeChat", function()
      local rec = emu:user_message { msg_type = "event", event = "subscribe", wait = true }
      assert.equal("reply", rec.outcome, rec.reason)
      assert.equal("Welcome! Write 'dot' for a picture.", rec.reply.fields.Content)
      rec = emu:user_message { openid = rec.openid, msg_type = "text", content = "dot", wait = true }
      assert.equal("reply", rec.outcome, rec.reason)
      assert.equal("image", rec.reply.fields.MsgType)
      rec = emu:user_message { openid = rec.openid, msg_type = "text", content = "hi", wait = true }
      assert.equal("You said: hi", rec.reply.fields.Content)
      local received = emu:received(rec.openid)
      assert.equal(3, #received)
      for _, r in ipairs(received) do assert.equal("passive", r.via) end
      -- the server check
      local status, body = ngx:curl("/wechat?signature=0&timestamp=1&nonce=2&echostr=x")
      assert.equal(403, status)
      assert.matches("signature", body)
    end)
  end)
end)
