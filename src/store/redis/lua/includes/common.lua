-- Shared pieces of quotad's decision scripts: number formatting, the clock, limit specs, the judge of
-- one limit and the state it reports. Each limit kind's arithmetic is in its own file, with its
-- TypeScript twin named there: rate.lua, budget.lua, concurrency.lua. Amounts that TypeScript defines
-- (the retry cap, what each measure counts of a usage) come in as arguments, never as copies.

-- Lua turns large numbers into exponent notation when it makes strings of them; counters must stay integers.
local function int(x)
  return string.format('%d', x)
end

local function clockNow(given)
  if given ~= '' then
    return tonumber(given)
  end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function max0(x)
  if x < 0 then
    return 0
  end
  return x
end

--- @include "includes/counters"

-- A limit spec is one ARGV value, its fields space-separated: kind, limit, cost, shadow, measure, name,
-- then four kind-specific values (rate: window ms; budget: the four period boundaries b0..b3). One value,
-- not ten: fewer arguments for the client to frame and Redis to parse and hand to the script.
local SPEC_WIDTH = 1

-- The n limit specs starting at ARGV[first], limit i's key at KEYS[1 + i]: a counters hash for rate
-- and budget limits (their field named here, and their hash's scope: s the subject's, o the org's), a
-- lease set for concurrency.
local function readSpecs(n, first)
  local specs = {}
  for i = 1, n do
    local kind, limit, cost, shadow, measure, name, a, b, c, d =
      string.match(ARGV[first + i - 1], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
    local spec = {
      kind = kind,
      limit = tonumber(limit),
      cost = tonumber(cost),
      shadow = shadow == '1',
      measure = measure,
      name = name,
      key = KEYS[1 + i],
      a = tonumber(a),
      b = tonumber(b),
      c = tonumber(c),
      d = tonumber(d),
    }
    if kind ~= 'c' then
      spec.field = string.upper(kind) .. name
      spec.scope = 's'
      if string.sub(spec.key, -6) == ':c:org' then
        spec.scope = 'o'
      end
    end
    specs[i] = spec
  end
  return specs
end

--- @include "includes/rate"

--- @include "includes/budget"

--- @include "includes/concurrency"

-- Judges one limit for a charge of `cost` at `now`, with what the earlier layout holds added when
-- `folding` (see legacyPresent). Returns a state table: used, remaining, reset, exceeded, retry, pstart,
-- pend, reserved and held (budgets), and `bucket` (window index or period start). A denial that requests
-- in flight cause suggests a retry of at most `retryCapMs` (the caller's CONCURRENCY_RETRY_CAP_MS): they
-- usually finish long before their lease ends.
local function judge(spec, cost, now, counters, retryCapMs, folding)
  local st = {
    used = 0, remaining = 0, reset = 0, exceeded = false, retry = 0, pstart = 0, pend = 0, bucket = 0,
    reserved = 0, held = false,
  }
  if spec.kind == 'r' then
    judgeRate(st, spec, cost, now, folding)
  elseif spec.kind == 'b' then
    judgeBudget(st, spec, cost, now, retryCapMs, folding)
  else
    judgeLeases(st, spec.key, spec, cost, now, counters, retryCapMs)
  end
  st.remaining = max0(spec.limit - st.used)
  return st
end

local function flag(x)
  if x then
    return 1
  end
  return 0
end

-- The state of one limit as it goes back to the caller: STATE_WIDTH values (9, see redis-store.ts).
local function pushState(out, st)
  out[#out + 1] = st.used
  out[#out + 1] = st.remaining
  out[#out + 1] = st.reset
  out[#out + 1] = flag(st.exceeded)
  out[#out + 1] = st.retry
  out[#out + 1] = st.pstart
  out[#out + 1] = st.pend
  out[#out + 1] = st.reserved
  out[#out + 1] = flag(st.held)
end

-- What a limit reports when it was not judged (a command that came after its deadline).
local UNJUDGED = {
  used = 0, remaining = 0, reset = 0, exceeded = false, retry = 0, pstart = 0, pend = 0, reserved = 0, held = false,
}

-- What a reservation key says of the counters its charges name: its prefix (the part before ':res:', the
-- org's prefix and hash tag, which every counter of the request starts with) and its subject's segment
-- (':s:<subject>:', in each of the subject's counters; parts are escaped, so a subject holds no ':').
-- A charge names its counter without either: the values stay short, and a hash of short values is a
-- listpack, a few hundred bytes instead of a hashtable of many more.
local function keyContext(reservationKey)
  local at = string.find(reservationKey, ':res:', 1, true)
  if not at then
    return { prefix = '', subject = nil }
  end
  local rest = string.sub(reservationKey, at + 5)
  local stop = string.find(rest, ':', 1, true)
  local subject = nil
  if stop then
    subject = ':s:' .. string.sub(rest, 1, stop - 1) .. ':'
  end
  return { prefix = string.sub(reservationKey, 1, at - 1), subject = subject }
end

-- A counter's key as a charge stores it: without the prefix (so starting with ':'), the subject's segment
-- as ':~:'; a key outside the prefix whole.
local function relativeKey(context, key)
  local prefix = context.prefix
  if prefix == '' or string.sub(key, 1, #prefix) ~= prefix then
    return key
  end
  local relative = string.sub(key, #prefix + 1)
  local subject = context.subject
  if subject then
    local at = string.find(relative, subject, 1, true)
    if at then
      relative = string.sub(relative, 1, at - 1) .. ':~:' .. string.sub(relative, at + #subject)
    end
  end
  return relative
end

-- The counters hash a charge names by its scope: the subject's ('s') or the org's ('o').
local function scopeHash(context, scope)
  if scope == 'o' then
    return context.prefix .. ':c:org'
  end
  return context.prefix .. ':c' .. string.sub(context.subject, 1, -2)
end

-- The full key of a charge's counter (the inverse of relativeKey).
local function fullKey(context, relative)
  if string.sub(relative, 1, 1) ~= ':' then
    return relative
  end
  if context.subject then
    local at = string.find(relative, ':~:', 1, true)
    if at then
      relative = string.sub(relative, 1, at - 1) .. context.subject .. string.sub(relative, at + 3)
    end
  end
  return context.prefix .. relative
end

-- Reads a reservation record; a record past its logical expiry (field x) counts as absent, so that
-- time driven by a test clock forgets it exactly as real time would. The second value says whether a
-- record is stored at all, live or not (one to delete before writing anew).
--
-- A record's charges, one per limit, are fields '1', '2', ...: kind, then for a rate or budget the scope
-- of its counters hash (s | o) and its field, for a lease set its key (relative: see keyContext), then
-- bucket, amount and measure, tab-separated. A record written before the counters hash names a rate or
-- budget counter by its earlier-layout key as well (see counterOf). A record written before that
-- layout holds them all in one field 'ch', a line each, with full keys: it is read as written, so an
-- upgrade settles the reservations in flight as the earlier version made them. Either way `charges` is a
-- list of { kind, key, field, bucket, amount, measure } with full keys; field is nil for a lease set and
-- for a counter named by its earlier-layout key.
local function readReservation(key, now)
  local flat = redis.call('HGETALL', key)
  if #flat == 0 then
    return nil, false
  end
  local f = {}
  for i = 1, #flat, 2 do
    f[flat[i]] = flat[i + 1]
  end
  if now >= tonumber(f.x) then
    return nil, true
  end
  local lines = {}
  local context = { prefix = '', subject = nil }
  if f.ch then
    for line in string.gmatch(f.ch, '[^\n]+') do
      lines[#lines + 1] = line
    end
  else
    context = keyContext(key)
    local i = 1
    while f[tostring(i)] do
      lines[i] = f[tostring(i)]
      i = i + 1
    end
  end
  local charges = {}
  for i, line in ipairs(lines) do
    local kind, scope, field, bucket, amount, measure =
      string.match(line, '^(%a)\t([so])\t(%u[%w_]*)\t(%-?%d+)\t(%-?%d+)\t(%a+)$')
    local key
    if kind then
      key = scopeHash(context, scope)
    else
      kind, key, bucket, amount, measure = string.match(line, '^(%a)\t(.-)\t(%-?%d+)\t(%-?%d+)\t(%a+)$')
      key = fullKey(context, key)
    end
    charges[i] = { kind = kind, key = key, field = field, bucket = tonumber(bucket), amount = tonumber(amount), measure = measure }
  end
  return {
    state = f.s,
    leaseEnd = tonumber(f.le),
    tokens = tonumber(f.t),
    micros = tonumber(f.u),
    chargedIn = tonumber(f.ci) or 0,
    chargedOut = tonumber(f.co) or 0,
    chargedUsd = tonumber(f.cu) or 0,
    late = f.lt == '1',
    charges = charges,
  }, true
end
