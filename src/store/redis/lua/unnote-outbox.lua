--[[
  Drops an org from the index of outboxes with events, but only if nobody noted it again since it was
  read (its score unchanged): an org whose decision script raised an event meanwhile stays.

  Input:
    KEYS[1]   the index (sorted set: org -> when noted, ms)
    ARGV[1]   the org
    ARGV[2]   its score as read

  Output: 1 when dropped
]]

if redis.call('ZSCORE', KEYS[1], ARGV[1]) == ARGV[2] then
  return redis.call('ZREM', KEYS[1], ARGV[1])
end
return 0
