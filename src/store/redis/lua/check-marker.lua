--[[
  The store's identity marker: a random id the authorities write once into an empty store and keep
  reading. It vanishing (FLUSHALL, a Redis restarted without its data, a replica promoted with nothing)
  or changing tells every authority that the store under its caches was replaced.

  A reset seen by an authority that refuses on resets (--on-store-reset refuse) is recorded as pending
  (KEYS[2] = the marker id awaiting an operator's confirmation), so every such authority, one started
  later included, refuses until confirm-store.lua rewrites the marker and clears it.

  Input:
    KEYS[1]   the marker (string, under the registry's hash tag)
    KEYS[2]   the pending reset: the marker id no operator has confirmed yet
    KEYS[3]   the confirmed marker: the id confirm-store.lua wrote last
    ARGV[1]   the id this authority knows ('' at start)
    ARGV[2]   a fresh id, written when the marker is missing
    ARGV[3]   the marker's TTL, ms (refreshed on every check)
    ARGV[4]   1: this authority refuses on a reset (record it as pending); 0: it serves on

  Output: { state, id, pending, server }: state 1 = the known id, 0 = missing (now `id`, freshly
  written), 2 = another id (adopted), 3 = another id that an operator's confirmation wrote (adopted, no
  reset); pending 1 while the marker `id` awaits an operator's confirmation; server: `run_id:master_replid`
  of the Redis that ran this (the master holding the marker's slot). A restart changes the run id, a
  promoted replica both: the store under the caches may have changed even when the marker reads the same
  (rewritten, or copied with the data).
]]

local server = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') .. ':' ..
  string.match(redis.call('INFO', 'replication'), 'master_replid:(%x+)')

local ttl = ARGV[3]
local refuse = ARGV[4] == '1'
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
  -- At an authority's first look a missing marker is a new store as likely as an emptied one: no refusal.
  if refuse and ARGV[1] ~= '' then
    redis.call('SET', KEYS[2], ARGV[2], 'PX', ttl)
    return { 0, ARGV[2], 1, server }
  end
  return { 0, ARGV[2], 0, server }
end
redis.call('PEXPIRE', KEYS[1], ttl)
local pending = redis.call('GET', KEYS[2]) == current and 1 or 0
if current == ARGV[1] or ARGV[1] == '' then
  return { current == ARGV[1] and 1 or 2, current, pending, server }
end
if redis.call('GET', KEYS[3]) == current then
  return { 3, current, pending, server }
end
if refuse then
  redis.call('SET', KEYS[2], current, 'PX', ttl)
  pending = 1
end
return { 2, current, pending, server }
