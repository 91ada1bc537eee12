std = "max"
codes = true
max_line_length = 110
files["lua/wxmedia/ngx.lua"] = { std = "ngx_lua" }
files["lua/wxmedia/ngx"] = { std = "ngx_lua" }
files["lua/wxmedia/store/shared_dict.lua"] = { std = "ngx_lua" }
files["emulator/lua"] = { std = "ngx_lua" }
files["spec"] = { std = "+busted" }
files["bench"] = { std = "max" }
exclude_files = { "build/", ".emulator/", "bench/node_modules/" }
