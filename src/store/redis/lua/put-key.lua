--[[
  Writes an API key record if no other write came first (compare and set on its version), indexes its
  secrets and its id, and announces the change to every authority replica.

  Input:
    KEYS[1]       the record (hash: doc = JSON document, v = version, used = last-used ms)
    KEYS[2]       every key id (sorted set, scores 0)
    KEYS[3]       the org's key ids (sorted set, scores 0)
    KEYS[3 + i]   the index entry of secret i (string: the key id), for i = 1..n

    ARGV[1]       the new version; the stored one must be one less (absent counts as 0)
    ARGV[2]       the document
    ARGV[3]       the key id
    ARGV[4]       the record's time to live in ms; 0 keeps it while the key lives
    ARGV[5]       the channel to publish the id on
    ARGV[5 + i]   secret i's index time to live in ms; 0 keeps it while the key lives

  Output: { 1, version } when written; { 0, stored version } when another write came first.
]]

local version = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 'v') or '0')
if stored ~= version - 1 then
  return { 0, stored }
end

local function keep(key, ttl)
  if ttl > 0 then
    redis.call('PEXPIRE', key, ttl)
  else
    redis.call('PERSIST', key)
  end
end

redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'v', version)
keep(KEYS[1], tonumber(ARGV[4]))
redis.call('ZADD', KEYS[2], 0, ARGV[3])
redis.call('ZADD', KEYS[3], 0, ARGV[3])
for i = 4, #KEYS do
  redis.call('SET', KEYS[i], ARGV[3])
  keep(KEYS[i], tonumber(ARGV[2 + i]))
end
redis.call('PUBLISH', ARGV[5], ARGV[3])
return { 1, version }
