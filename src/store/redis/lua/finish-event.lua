--[[
  Ends a delivery attempt of one event: delivered or dead (it leaves the outbox), or retried (due again
  at ARGV[4]). An event that is no longer in the outbox (another authority finished it, after this one's
  lease ran out) is left as it is, so a late answer never turns delivered into dead or due again.

  Input:
    KEYS[1]   the org's event records (hash)
    KEYS[2]   the org's outbox (sorted set: id -> due ms)
    ARGV[1]   the event id
    ARGV[2]   the new state field (state, attempts, last error; tab-separated)
    ARGV[3]   'done' (delivered or dead) or 'retry'
    ARGV[4]   for retry: when it is due again, ms

  Output: 1 when the state changed, 0 when the event had left the outbox already
]]

if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1] .. ':s', ARGV[2])
if ARGV[3] == 'retry' then
  redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
else
  redis.call('ZREM', KEYS[2], ARGV[1])
end
return 1
