-- wxmedia from a source tree: `luarocks --lua-version=5.4 make rockspec/wxmedia-scm-1.rockspec` in the
-- repository (Debian's luarocks builds for Lua 5.1 unless told). On Debian, curl.h lives in the
-- multiarch folder: add CURL_INCDIR=/usr/include/x86_64-linux-gnu CURL_LIBDIR=/usr/lib/x86_64-linux-gnu.
-- OpenSSL's libcrypto (libssl-dev) is found where Debian puts it, without OPENSSL_INCDIR/LIBDIR.
rockspec_format = "3.0"
package = "wxmedia"
version = "scm-1"

source = {
  url = "git+https://github.com/wxmedia/wxmedia.git",
  branch = "main",
}

description = {
  summary = "WeChat temporary media upload and download over libcurl, with access_token handling",
  detailed = [[
wxmedia uploads and downloads WeChat Official Account temporary media (cgi-bin/media/upload and
cgi-bin/media/get). A C module streams the bytes through libcurl; a Lua layer fetches and shares the
access_token, retries what is worth retrying and checks each file before it is sent. Comes with the
wxmedia command.
]],
  license = "MIT",
  labels = { "wechat", "curl", "http", "upload" },
}

dependencies = {
  "lua >= 5.1",
  "lua-cjson",
  "luaexpat",
}

external_dependencies = {
  CURL = { header = "curl/curl.h", library = "curl" },
  OPENSSL = { header = "openssl/evp.h", library = "crypto" },
}

build = {
  type = "builtin",
  modules = {
    ["wxmedia.core"] = {
      sources = {
        "src/address.c", "src/buffer.c", "src/clock.c", "src/core.c", "src/digest.c", "src/download.c",
        "src/errors.c", "src/fs.c", "src/lock.c", "src/multi.c", "src/request.c", "src/response.c",
        "src/session.c", "src/temp.c", "src/transfer.c", "src/upload.c", "src/upload_source.c", "src/url.c",
      },
      defines = { "_DEFAULT_SOURCE" },
      libraries = { "curl", "crypto" },
      incdirs = { "$(CURL_INCDIR)", "$(OPENSSL_INCDIR)" },
      libdirs = { "$(CURL_LIBDIR)", "$(OPENSSL_LIBDIR)" },
    },
    ["wxmedia"] = "lua/wxmedia.lua",
    ["wxmedia.answer"] = "lua/wxmedia/answer.lua",
    ["wxmedia.cli"] = "lua/wxmedia/cli.lua",
    ["wxmedia.cli.args"] = "lua/wxmedia/cli/args.lua",
    ["wxmedia.cli.commands"] = "lua/wxmedia/cli/commands.lua",
    ["wxmedia.cli.help"] = "lua/wxmedia/cli/help.lua",
    ["wxmedia.cli.output"] = "lua/wxmedia/cli/output.lua",
    ["wxmedia.cli.progress"] = "lua/wxmedia/cli/progress.lua",
    ["wxmedia.cli.spool"] = "lua/wxmedia/cli/spool.lua",
    ["wxmedia.client"] = "lua/wxmedia/client.lua",
    ["wxmedia.config"] = "lua/wxmedia/config.lua",
    ["wxmedia.errors"] = "lua/wxmedia/errors.lua",
    ["wxmedia.many"] = "lua/wxmedia/many.lua",
    ["wxmedia.media"] = "lua/wxmedia/media.lua",
    ["wxmedia.ngx"] = "lua/wxmedia/ngx.lua",
    ["wxmedia.ngx.abort"] = "lua/wxmedia/ngx/abort.lua",
    ["wxmedia.ngx.backend"] = "lua/wxmedia/ngx/backend.lua",
    ["wxmedia.ngx.callback"] = "lua/wxmedia/ngx/callback.lua",
    ["wxmedia.ngx.phase"] = "lua/wxmedia/ngx/phase.lua",
    ["wxmedia.ngx.reply"] = "lua/wxmedia/ngx/reply.lua",
    ["wxmedia.ngx.serve"] = "lua/wxmedia/ngx/serve.lua",
    ["wxmedia.ngx.status"] = "lua/wxmedia/ngx/status.lua",
    ["wxmedia.ngx.thread"] = "lua/wxmedia/ngx/thread.lua",
    ["wxmedia.ngx.upload_request"] = "lua/wxmedia/ngx/upload_request.lua",
    ["wxmedia.message"] = "lua/wxmedia/message.lua",
    ["wxmedia.redact"] = "lua/wxmedia/redact.lua",
    ["wxmedia.reply"] = "lua/wxmedia/reply.lua",
    ["wxmedia.retry"] = "lua/wxmedia/retry.lua",
    ["wxmedia.reuse"] = "lua/wxmedia/reuse.lua",
    ["wxmedia.source"] = "lua/wxmedia/source.lua",
    ["wxmedia.store"] = "lua/wxmedia/store.lua",
    ["wxmedia.store.file"] = "lua/wxmedia/store/file.lua",
    ["wxmedia.store.memory"] = "lua/wxmedia/store/memory.lua",
    ["wxmedia.store.redis"] = "lua/wxmedia/store/redis.lua",
    ["wxmedia.store.shared_dict"] = "lua/wxmedia/store/shared_dict.lua",
    ["wxmedia.token"] = "lua/wxmedia/token.lua",
    ["wxmedia.transport"] = "lua/wxmedia/transport.lua",
    ["wxmedia.utf8"] = "lua/wxmedia/utf8.lua",
    ["wxmedia.warn"] = "lua/wxmedia/warn.lua",
  },
  install = {
    bin = { wxmedia = "bin/wxmedia" },
  },
}

test = {
  type = "busted",
}
