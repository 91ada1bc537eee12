-- WeChat's callback signature: the hex SHA-1 of the token, timestamp and nonce, sorted and joined
-- (nginx's own SHA-1, ngx.sha1_bin).
local ngx_sha1_bin = ngx.sha1_bin
local table_sort, table_concat = table.sort, table.concat

local _M = {}

function _M.sha1_hex(text)
  return (ngx_sha1_bin(text):gsub(".", function(c) return ("%02x"):format(c:byte()) end))
end

function _M.signature(token, timestamp, nonce)
  local parts = { token, timestamp, nonce }
  table_sort(parts)
  return _M.sha1_hex(table_concat(parts))
end

return _M
