--[[
  Claims up to ARGV[2] events of one org that are due, leasing each for ARGV[3] ms: until the lease ends
  no other claim returns it. An authority that dies holding a claim loses nothing: when the lease ends,
  the event is due again and another authority claims it. Each claim counts one delivery attempt.

  Input:
    KEYS[1]   the org's event records (hash: id -> event JSON, id:s -> state, attempts, last error)
    KEYS[2]   the org's outbox (sorted set: id -> due ms)
    ARGV[1]   now in ms, or '' for Redis TIME
    ARGV[2]   the most events to claim
    ARGV[3]   lease ms

  Output: { events left in the outbox, then per claimed event: id, event JSON, state field }
]]

--- @include "includes/common"

local now = clockNow(ARGV[1])
local max = tonumber(ARGV[2])
local lease = tonumber(ARGV[3])
local out = { 0 }
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, max)) do
  local stored = redis.call('HMGET', KEYS[1], id, id .. ':s')
  if not stored[1] then
    redis.call('ZREM', KEYS[2], id)
  else
    local attempts = tonumber(string.match(stored[2] or '', '^[^\t]*\t(%d+)')) or 0
    local lastError = string.match(stored[2] or '', '^[^\t]*\t%d+\t(.*)$') or ''
    local state = 'pending\t' .. int(attempts + 1) .. '\t' .. lastError
    redis.call('HSET', KEYS[1], id .. ':s', state)
    redis.call('ZADD', KEYS[2], int(now + lease), id)
    out[#out + 1] = id
    out[#out + 1] = stored[1]
    out[#out + 1] = state
  end
end
out[1] = redis.call('ZCARD', KEYS[2])
return out
