--[[
  One ShouldRateLimit call of an Envoy domain: checks every counter, then charges all of them or none;
  or reserves likewise under a request id; or settles such a reservation. Self-contained (no includes):
  the arithmetic mirrors src/core/slot-window.ts, and the RLS tests hold both stores to the same answers.

  Input:
    KEYS[1]       the request id's reservation record (hash {s = 0 reserved | 1 settled, x = expiry ms,
                  <counter key> = "<window index>:<hits>"}); in phase charge, a key of the same domain
                  that is never touched. Its expiry is kept in x too, so it follows ARGV[1]'s clock.
    KEYS[1 + i]   the counter of descriptor i, for i = 1..n: hash {w = window index, c = current, p = previous}
                  Every key shares the domain's hash tag, so the counters a reservation names (settle
                  releases them) are in the same slot as the keys passed.

    ARGV[1]       now in ms, or '' for Redis TIME
    ARGV[2]       phase: charge | reserve | settle
    ARGV[3]       reservation time to live, ms
    ARGV[4]       n, the number of counters
    ARGV[5 ...]   n counter specs of 5 values: window ms (a multiple of 1000), limit, cost, shadow (0|1),
                  reserved (0|1: in phase reserve, part of the request id's reservation)

  Output: { outcome (0 denied, 1 admitted, 2 duplicate, 3 settled, 4 settled_duplicate,
            5 settled_without_reservation), then per counter 5 values: used, remaining, exceeded (0|1),
            retry after ms, reset after ms }
]]

local SLOTS = 1000

local function int(x)
  return string.format('%d', x)
end

local now
if ARGV[1] ~= '' then
  now = tonumber(ARGV[1])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local phase = ARGV[2]
local ttl = tonumber(ARGV[3])
local n = tonumber(ARGV[4])

local specs = {}
for i = 1, n do
  local base = 5 + (i - 1) * 5
  specs[i] = {
    key = KEYS[1 + i],
    W = tonumber(ARGV[base]),
    limit = tonumber(ARGV[base + 1]),
    cost = tonumber(ARGV[base + 2]),
    shadow = ARGV[base + 3] == '1',
    reserved = ARGV[base + 4] == '1',
  }
end

-- The counts seen from window `index`: rolled forward one window, or cleared when further behind.
local function counts(key, index)
  local stored = redis.call('HMGET', key, 'w', 'c', 'p')
  local w = tonumber(stored[1])
  if w == index then
    return tonumber(stored[2]) or 0, tonumber(stored[3]) or 0
  elseif w == index - 1 then
    return 0, tonumber(stored[2]) or 0
  end
  return 0, 0
end

local function judge(current, previous, limit, W, elapsed, cost)
  local slotMs = W / SLOTS
  local slot = math.floor(elapsed / slotMs)
  local weighted = previous * (SLOTS - slot) + current * SLOTS
  local used = math.ceil(weighted / SLOTS)
  local exceeded = limit == 0 or weighted + cost * SLOTS > limit * SLOTS
  local retry = 0
  if exceeded and limit > 0 and cost <= limit then
    if current + cost <= limit then
      local fit = SLOTS - math.floor((limit - cost - current) * SLOTS / previous)
      retry = math.max(1, fit * slotMs - elapsed)
    else
      local fit = SLOTS - math.floor((limit - cost) * SLOTS / current)
      retry = W - elapsed + fit * slotMs
    end
  end
  local reset = 0
  if current > 0 then
    reset = 2 * W - elapsed
  elseif previous > 0 then
    reset = W - elapsed
  end
  return used, exceeded, retry, reset
end

local function push(out, limit, used, exceeded, retry, reset)
  local remaining = limit - used
  if remaining < 0 then
    remaining = 0
  end
  out[#out + 1] = used
  out[#out + 1] = remaining
  out[#out + 1] = exceeded and 1 or 0
  out[#out + 1] = retry
  out[#out + 1] = reset
end

-- Adds hits to the current window of a counter; its counts matter until the window after next begins.
local function add(key, W, hits)
  local index = math.floor(now / W)
  local current, previous = counts(key, index)
  redis.call('HSET', key, 'w', int(index), 'c', int(current + hits), 'p', int(previous))
  redis.call('PEXPIRE', key, int((index + 2) * W - now))
  return index
end

local function peek(outcome)
  local out = { outcome }
  for i = 1, n do
    local s = specs[i]
    local index = math.floor(now / s.W)
    local current, previous = counts(s.key, index)
    local used, _, _, reset = judge(current, previous, s.limit, s.W, now - index * s.W, 0)
    push(out, s.limit, used, false, 0, reset)
  end
  return out
end

local record = KEYS[1]

-- A record past its logical expiry is gone, as PEXPIRE would have it under Redis's own clock.
local function recordState()
  local stored = redis.call('HMGET', record, 's', 'x')
  if stored[1] and (tonumber(stored[2]) or 0) <= now then
    redis.call('DEL', record)
    return nil
  end
  return stored[1]
end

local function writeRecord(fields)
  fields[#fields + 1] = 'x'
  fields[#fields + 1] = int(now + ttl)
  redis.call('HSET', record, unpack(fields))
  redis.call('PEXPIRE', record, int(ttl))
end

if phase == 'settle' then
  local state = recordState()
  if state == '1' then
    return peek(4)
  end
  local found = state == '0'
  if found then
    local fields = redis.call('HGETALL', record)
    for f = 1, #fields, 2 do
      local key = fields[f]
      if key ~= 's' and key ~= 'x' then
        local sep = string.find(fields[f + 1], ':', 1, true)
        local index = tonumber(string.sub(fields[f + 1], 1, sep - 1))
        local hits = tonumber(string.sub(fields[f + 1], sep + 1))
        local stored = redis.call('HMGET', key, 'w', 'c', 'p')
        local w = tonumber(stored[1])
        if w == index then
          redis.call('HSET', key, 'c', int(math.max(0, (tonumber(stored[2]) or 0) - hits)))
        elseif w == index + 1 then
          redis.call('HSET', key, 'p', int(math.max(0, (tonumber(stored[3]) or 0) - hits)))
        end
      end
    end
    redis.call('DEL', record)
  end
  for i = 1, n do
    add(specs[i].key, specs[i].W, specs[i].cost)
  end
  writeRecord({ 's', '1' })
  if found then
    return peek(3)
  end
  return peek(5)
end

if phase == 'reserve' and recordState() then
  return peek(2)
end

local pending = {}
local judged = {}
local denied = false
for i = 1, n do
  local s = specs[i]
  local index = math.floor(now / s.W)
  local current, previous = counts(s.key, index)
  local earlier = pending[s.key] or 0
  pending[s.key] = earlier + s.cost
  current = current + earlier
  local used, exceeded, retry, reset = judge(current, previous, s.limit, s.W, now - index * s.W, s.cost)
  judged[i] = { current = current, previous = previous, used = used, exceeded = exceeded, retry = retry, reset = reset }
  if exceeded and not s.shadow then
    denied = true
  end
end

local out
if denied then
  out = { 0 }
  for i = 1, n do
    local j = judged[i]
    push(out, specs[i].limit, j.used, j.exceeded, j.retry, j.reset)
  end
  return out
end

local charged = {}
for i = 1, n do
  local s = specs[i]
  local index = add(s.key, s.W, s.cost)
  if s.reserved then
    local c = charged[s.key]
    if c then
      c.hits = c.hits + s.cost
    else
      charged[s.key] = { index = index, hits = s.cost }
    end
  end
end
if phase == 'reserve' then
  local fields = { 's', '0' }
  for key, c in pairs(charged) do
    fields[#fields + 1] = key
    fields[#fields + 1] = int(c.index) .. ':' .. int(c.hits)
  end
  writeRecord(fields)
end

out = { 1 }
for i = 1, n do
  local s = specs[i]
  local j = judged[i]
  local index = math.floor(now / s.W)
  local used, _, _, reset = judge(j.current + s.cost, j.previous, s.limit, s.W, now - index * s.W, 0)
  push(out, s.limit, used, j.exceeded, j.retry, reset)
end
return out
