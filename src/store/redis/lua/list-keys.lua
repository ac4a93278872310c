--[[
  A page of API key records in id order, dropping ids whose record has expired from the index.

  Input:
    KEYS[1]   the id index to page through (sorted set, scores 0)
    ARGV[1]   list ids after this one (exclusive); '' from the start
    ARGV[2]   at most this many records
    ARGV[3]   the prefix of record keys (the record is ARGV[3] .. id, under the same {keys} hash tag)

  Output: { doc, version, last used ms or '', ... } per record.
]]

local from = '-'
if ARGV[1] ~= '' then
  from = '(' .. ARGV[1]
end
local want = tonumber(ARGV[2])
local out = {}
local found = 0
while found < want do
  local ids = redis.call('ZRANGEBYLEX', KEYS[1], from, '+', 'LIMIT', 0, want - found)
  if #ids == 0 then
    break
  end
  for _, id in ipairs(ids) do
    local record = redis.call('HMGET', ARGV[3] .. id, 'doc', 'v', 'used')
    if record[1] then
      out[#out + 1] = record[1]
      out[#out + 1] = record[2]
      out[#out + 1] = record[3] or ''
      found = found + 1
    else
      redis.call('ZREM', KEYS[1], id)
    end
  end
  from = '(' .. ids[#ids]
end
return out
