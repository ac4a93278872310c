--[[
  An operator's confirmation that the store as it is now (emptied or replaced) is the one to serve
  from: a fresh marker, recorded as confirmed, and no pending reset. Authorities that refused on the
  reset see the confirmed marker at their next check and serve again, without raising a new alarm.

  Input:
    KEYS[1]   the marker
    KEYS[2]   the pending reset
    KEYS[3]   the confirmed marker
    ARGV[1]   the fresh marker id
    ARGV[2]   the marker's TTL, ms

  Output: { pending, id }: pending 1 when a reset was awaiting confirmation, 0 when none was; `id` the
  new marker.
]]

local pending = redis.call('GET', KEYS[2]) and 1 or 0
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[3], ARGV[1], 'PX', ARGV[2])
redis.call('DEL', KEYS[2])
return { pending, ARGV[1] }
