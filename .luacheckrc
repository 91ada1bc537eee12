std = "max"
codes = true
max_line_length = 110
files["lua/wxmedia/ngx.lua"] = { std = "ngx_lua" }
files["lua/wxmedia/thread.lua"] = { std = "ngx_lua" }
files["emulator/lua"] = { std = "ngx_lua" }
files["spec"] = { std = "+busted" }
files["bench"] = { std = "max" }
exclude_files = { "build/", ".emulator/", "bench/node_modules/" }
