--[[
  Publishes a confirmation token on the key-change channel from the master that owns the registry's slot,
  the same node whose scripts publish every key change. On Cluster a subscriber may sit on any node, and a
  node forwards another's messages in the order it sent them: the token heard back proves every change
  published before it was heard too.

  Input:
    KEYS[1]   any key of the registry (routes the call to the `{keys}` slot's master)
    ARGV[1]   the channel
    ARGV[2]   the token

  Output: the number of subscribers on this node that got it directly.
]]

return redis.call('PUBLISH', ARGV[1], ARGV[2])
