--[[
  Follows a secret's index entry to its API key record, in one round trip.

  The record's key is built here from the id, under the same {keys} hash tag as the index entry, so both
  live in one Cluster slot.

  Input:
    KEYS[1]   the secret's index entry (string: the key id)
    ARGV[1]   the prefix of record keys (the record is ARGV[1] .. id)

  Output: { doc, version, last used ms or '' }, or nil when the secret or its record is unknown.
]]

local id = redis.call('GET', KEYS[1])
if not id then
  return nil
end
local record = redis.call('HMGET', ARGV[1] .. id, 'doc', 'v', 'used')
if not record[1] then
  return nil
end
return { record[1], record[2], record[3] or '' }
