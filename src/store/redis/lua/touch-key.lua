--[[
  Records that an API key was used: moves last-used forward only, and never creates a record.

  Input:
    KEYS[1]   the record (hash)
    ARGV[1]   when it was used, ms

  Output: 1 when last-used moved, 0 otherwise.
]]

if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
local used = tonumber(redis.call('HGET', KEYS[1], 'used') or '0')
if used >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'used', ARGV[1])
return 1
