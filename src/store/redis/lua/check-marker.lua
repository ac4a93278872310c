--[[
  The store's identity marker: a random id the authorities write once into an empty store and keep
  reading. It vanishing (FLUSHALL, a Redis restarted without its data, a replica promoted with nothing)
  or changing tells every authority that the store under its caches was replaced.

  Input:
    KEYS[1]   the marker (string, under the registry's hash tag)
    ARGV[1]   the id this authority knows ('' at start)
    ARGV[2]   a fresh id, written when the marker is missing
    ARGV[3]   the marker's TTL, ms (refreshed on every check)

  Output: { state, id }: state 1 = the known id, 0 = missing (now `id`, freshly written),
  2 = another id (adopted).
]]

local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return { 0, ARGV[2] }
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if current == ARGV[1] then
  return { 1, current }
end
return { 2, current }
