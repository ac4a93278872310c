-- The counters hash: one hash per subject (quotad:{org:<org>}:c:s:<subject>), and one per org for its
-- org-scoped limits (quotad:{org:<org>}:c:org), holding every rate and budget counter of its scope as one
-- field each: R<limit> is a rate limit's window, B<limit> a budget's current period, P<limit> the
-- period before it while a late settlement may still reach it (see rate.lua and budget.lua for the
-- values). A small hash is one listpack: less than half the memory of a key per counter.
--
-- A script reads each hash once (loadCounters: one HMGET of every field its limits name) and writes it
-- once (flushCounters: one HSET, and the time to live when a write asks for a longer one). Redis 7.0 has no
-- per-field expiry, so the hash lives as long as its longest-lived field needs: PEXPIRE only ever extends
-- it, and each field's value says itself whether it is stale (a rate's window index, a budget's period).
--
-- The layout before kept a key per counter (quotad:{org:<org>}:rate:<scope>:<limit>, and :budget:). That
-- name still identifies a limit in events (its fired markers and event ids), and data found under it is
-- folded in: an upgrade resets no budget, and what an authority of the earlier version charges during a
-- rollout is added rather than lost.

local counterValues = {} -- hash -> field -> value, or false when absent
local counterWrites = {} -- hash -> field -> value, or false to delete
local counterOrder = {} -- the hashes written, in order
local counterTtls = {} -- hash -> the time to live a write needs, ms
local foldedKeys = {} -- earlier-layout keys folded in, deleted once the fold is written

local SEGMENT = { r = 'rate', b = 'budget' }
local hashScopes = {} -- counters hash -> { its prefix, its scope }, parsed once a script

-- The key the earlier layout kept limit `name` of kind `kind` ('r' | 'b') of counters hash `hash` under.
local function legacyKey(hash, kind, name)
  local parts = hashScopes[hash]
  if not parts then
    local prefix, scope = string.match(hash, '^(.+):c:(s:[^:]*)$')
    if not prefix then
      prefix, scope = string.match(hash, '^(.+):c:(org)$')
    end
    parts = { prefix .. ':', ':' .. scope .. ':' }
    hashScopes[hash] = parts
  end
  return parts[1] .. SEGMENT[kind] .. parts[2] .. name
end

-- A rate or budget limit spec's earlier-layout key, named when first needed (legacyPresent, an event).
local function legacyOf(spec)
  local legacy = spec.legacy
  if not legacy then
    legacy = legacyKey(spec.key, spec.kind, spec.name)
    spec.legacy = legacy
  end
  return legacy
end

-- The inverse of legacyKey: the counters hash and field of an earlier-layout key (a reservation written before the
-- counters hash names its charges' counters that way).
local function counterOf(legacy)
  local prefix, segment, scope, name = string.match(legacy, '^(.+):(%a+):(s:[^:]*):([^:]+)$')
  if not prefix then
    prefix, segment, scope, name = string.match(legacy, '^(.+):(%a+):(org):([^:]+)$')
  end
  return prefix .. ':c:' .. scope, string.upper(string.sub(segment, 1, 1)) .. name
end

-- Reads the fields the rate and budget limits of `specs` name, one HMGET per hash.
local function loadCounters(specs)
  local fields, hashes = {}, {}
  for _, spec in ipairs(specs) do
    if spec.field then
      local list = fields[spec.key]
      if not list then
        list = {}
        fields[spec.key] = list
        hashes[#hashes + 1] = spec.key
      end
      list[#list + 1] = spec.field
      if spec.kind == 'b' then
        list[#list + 1] = 'P' .. spec.name
      end
    end
  end
  for _, hash in ipairs(hashes) do
    local list = fields[hash]
    local values = redis.call('HMGET', hash, unpack(list))
    local known = counterValues[hash] or {}
    for i, field in ipairs(list) do
      known[field] = values[i]
    end
    counterValues[hash] = known
  end
end

-- A field's value (a string), or nil.
local function counterGet(hash, field)
  local known = counterValues[hash]
  if not known then
    known = {}
    counterValues[hash] = known
  end
  local value = known[field]
  if value == nil then
    value = redis.call('HGET', hash, field)
    known[field] = value
  end
  return value or nil
end

-- Sets a field (value nil: deletes it), written by flushCounters; reads see it at once.
local function counterSet(hash, field, value)
  counterGet(hash, field)
  counterValues[hash][field] = value or false
  local writes = counterWrites[hash]
  if not writes then
    writes = {}
    counterWrites[hash] = writes
    counterOrder[#counterOrder + 1] = hash
  end
  writes[field] = value or false
end

-- Writes a rate or budget limit's own field. When the value holds what its earlier-layout key held (a
-- fold), that key is deleted with the flush.
local function counterWrite(spec, value)
  counterSet(spec.key, spec.field, value)
  if spec.folded then
    foldedKeys[#foldedKeys + 1] = legacyOf(spec)
    spec.folded = false
  end
end

-- Asks that `hash` live at least `ms` more.
local function counterTtl(hash, ms)
  if ms > (counterTtls[hash] or 0) then
    counterTtls[hash] = ms
  end
end

-- Writes what counterSet, counterTtl and the folds asked for.
local function flushCounters()
  for _, hash in ipairs(counterOrder) do
    local set, gone = { 'HSET', hash }, { 'HDEL', hash }
    for field, value in pairs(counterWrites[hash]) do
      if value then
        set[#set + 1] = field
        set[#set + 1] = value
      else
        gone[#gone + 1] = field
      end
    end
    if #set > 2 then
      redis.call(unpack(set))
    end
    if #gone > 2 then
      redis.call(unpack(gone))
    end
    local ttl = counterTtls[hash]
    if ttl and redis.call('PTTL', hash) < ttl then
      redis.call('PEXPIRE', hash, int(ttl))
    end
  end
  if #foldedKeys > 0 then
    redis.call('DEL', unpack(foldedKeys))
  end
  counterWrites, counterOrder, counterTtls, foldedKeys = {}, {}, {}, {}
end

-- Whether any rate or budget limit of `specs` still has data in the earlier layout (one EXISTS for all):
-- only then does a script read those keys.
local function legacyPresent(specs)
  local keys = {}
  for _, spec in ipairs(specs) do
    if spec.field then
      keys[#keys + 1] = legacyOf(spec)
    end
  end
  return #keys > 0 and redis.call('EXISTS', unpack(keys)) > 0
end
