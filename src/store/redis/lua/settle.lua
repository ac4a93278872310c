--[[
  Settles a reservation with the actual usage: every counter it charged moves by (actual - reserved) in
  the bucket it was charged to, what it held of a budget is released (unless its lease had ended), its
  concurrency lease is released, and it is marked settled. Without a reservation, the usage is charged
  directly to the limits given. A second settlement changes nothing.

  A 'failed' settlement with no tokens charges nothing (the attempt never reached the model, or a check
  was cancelled) and marks the request_id free (state f) instead: a later reserve under it is decided
  afresh, while the same settlement again is still a duplicate.

  The reservation's counters are named by its record (see readReservation in includes/common); they
  carry KEYS[1]'s hash tag, so they live in the same Cluster slot. A rate or budget counter is moved in
  its counters hash, or under its earlier-layout key while the earlier layout still holds it there.

  Input:
    KEYS[1]       the reservation record (hash)
    KEYS[1 + i]   the counter of limit i of the current policy, for i = 1..n (see reserve.lua)

    ARGV[1]       now in ms, or '' for Redis TIME
    ARGV[2]       idempotency window ms
    ARGV[3]       outcome: 'completed' | 'failed' | 'cancelled'
    ARGV[4]       actual input tokens
    ARGV[5]       actual output tokens
    ARGV[6]       actual micro-dollars
    ARGV[7]       this request's lease member
    ARGV[8]       n, the number of limits
    ARGV[9]       the longest retry a denial by requests in flight suggests, ms (as in reserve.lua)
    ARGV[10 ..14] what each measure counts of the actual usage and outcome (measuredAmount in
                  src/core/quota.ts): requests, input, output, total, usd
    ARGV[15 ...]  n limit specs as in reserve.lua, each costed at the actual usage
    then the event context and thresholds, and KEYS[n + 2 ..] the event keys (see includes/events.lua)

  Output: { status (1 settled, 2 duplicate, 3 charged without reservation), charged input tokens,
            charged output tokens, charged micro-dollars, reserved tokens, reserved micro-dollars,
            late (0|1), expired leases, then per limit the 9 values of reserve.lua, after settlement,
            then the number of events raised and one line per event (see includes/events) }
]]

--- @include "includes/common"

local now = clockNow(ARGV[1])
local windowMs = tonumber(ARGV[2])
local outcome = ARGV[3]
local actualIn, actualOut, actualUsd = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local member = ARGV[7]
local n = tonumber(ARGV[8])
local counters = { expired = 0 }
local retryCapMs = tonumber(ARGV[9])
local measuredBy = {
  requests = tonumber(ARGV[10]),
  input = tonumber(ARGV[11]),
  output = tonumber(ARGV[12]),
  total = tonumber(ARGV[13]),
  usd = tonumber(ARGV[14]),
}
local specs = readSpecs(n, 15)
local folding = legacyPresent(specs)
loadCounters(specs)

--- @include "includes/events"

local alertsAt = 15 + n * SPEC_WIDTH
local eventCtx = eventContext(alertsAt)
local eventKeys = { KEYS[n + 2], KEYS[n + 3], KEYS[n + 4] }

-- Raises the events of the budget in field `field` of counters hash `hash` moving from `before` to
-- `after` in its period starting `pstart`.
local function crossed(hash, field, pstart, before, after)
  if not eventCtx then
    return
  end
  for i = 1, n do
    local spec = specs[i]
    if spec.key == hash and spec.field == field and spec.kind == 'b' and (pstart == spec.a or pstart == spec.b or pstart == spec.c) then
      local _, pend = periodAt(spec, pstart)
      local thresholds = limitThresholds(alertsAt, i)
      crossThresholds(eventCtx, eventKeys, thresholds, legacyOf(spec), spec.limit, pstart, pend, before, after, now)
      return
    end
  end
end

-- What a charge's measure counts of the actual usage; a lease counts nothing.
local function measured(measure)
  return measuredBy[measure] or 0
end

local function report(status, chargedIn, chargedOut, chargedUsd, tokens, micros, late)
  local lateFlag = 0
  if late then
    lateFlag = 1
  end
  local out = { status, chargedIn, chargedOut, chargedUsd, tokens, micros, lateFlag, 0 }
  for i = 1, n do
    pushState(out, judge(specs[i], 0, now, counters, retryCapMs, folding))
  end
  out[8] = counters.expired
  return pushRaised(out)
end

local freeing = outcome == 'failed' and actualIn == 0 and actualOut == 0

local record, recordStored = readReservation(KEYS[1], now)
if record and (record.state == 'd' or (record.state == 'f' and freeing)) then
  return report(2, record.chargedIn, record.chargedOut, record.chargedUsd, record.tokens, record.micros, record.late)
end
if record and record.state == 'f' then
  -- Freed by a settlement that charged nothing; usage reported now has no reservation to settle.
  record = nil
end

local status, late, tokens, micros, leaseEnd = 3, false, 0, 0, 0
-- Moves a charge of a counter the earlier layout still holds under its own key, as that layout did (its
-- field in the counters hash names its events).
local function settleInEarlierLayout(kind, key, hash, field, bucket, delta, amount)
  if kind == 'r' then
    local counts = redis.call('HMGET', key, 'w', 'c', 'p')
    local w = tonumber(counts[1])
    if w == bucket then
      redis.call('HSET', key, 'c', int(max0((tonumber(counts[2]) or 0) + delta)))
    elseif w == bucket + 1 then
      redis.call('HSET', key, 'p', int(max0((tonumber(counts[3]) or 0) + delta)))
    end
    return
  end
  local held = 'h' .. int(bucket)
  local amounts = redis.call('HMGET', key, int(bucket), held)
  local spent = tonumber(amounts[1])
  if spent then
    redis.call('HSET', key, int(bucket), int(max0(spent + delta)))
    crossed(hash, field, bucket, spent, max0(spent + delta))
  end
  -- A late settlement's hold already ended with its lease (and may have been started afresh since).
  if amounts[2] and not late then
    redis.call('HSET', key, held, int(max0(tonumber(amounts[2]) - amount)))
  end
end

-- Moves a reservation's charge of `amount` to a rate or budget counter by `delta`: in its counters hash,
-- or under its earlier-layout key while that layout still holds it there.
local function settleCharge(charge, delta)
  local kind, bucket, amount = charge.kind, charge.bucket, charge.amount
  local hash, field, legacy = charge.key, charge.field, nil
  if not field then
    legacy = charge.key
    hash, field = counterOf(legacy)
  end
  local value = counterGet(hash, field)
  if not value then
    legacy = legacy or legacyKey(hash, kind, string.sub(field, 2))
    settleInEarlierLayout(kind, legacy, hash, field, bucket, delta, amount)
  elseif kind == 'r' then
    local moved = adjustWindow(value, bucket, delta)
    if moved then
      counterSet(hash, field, moved)
    end
  else
    local counter = { key = hash, field = field, name = string.sub(field, 2) }
    local b = readBudget(counter, false)
    local before, after = adjustBudget(b, bucket, delta, amount, late)
    if before then
      writeBudget(counter, b, now, true)
      crossed(hash, field, bucket, before, after)
    end
  end
end

if record then
  status, tokens, micros, leaseEnd = 1, record.tokens, record.micros, record.leaseEnd
  late = now >= record.leaseEnd
  for _, charge in ipairs(record.charges) do
    if charge.kind == 'c' then
      redis.call('ZREM', charge.key, member)
    else
      settleCharge(charge, measured(charge.measure) - charge.amount)
    end
  end
else
  for i = 1, n do
    local spec = specs[i]
    if spec.kind == 'r' then
      local W = spec.a
      local index = math.floor(now / W)
      local current, previous, sameWindow = rollWindow(spec, index, folding)
      writeWindow(spec, index, W, current + spec.cost, previous, sameWindow, now)
    elseif spec.kind == 'b' then
      local pstart, pend = periodAt(spec, now)
      local b = readBudget(spec, folding)
      local before = 0
      if b.start == pstart then
        before = b.amount
      elseif b.prevStart == pstart then
        before = b.prevAmount
      end
      chargeBudget(spec, b, pstart, spec.cost, now, pend - now + windowMs, nil, nil)
      crossed(spec.key, spec.field, pstart, before, before + spec.cost)
    end
  end
end
flushCounters()

local lateFlag = '0'
if late then
  lateFlag = '1'
end
local state = 'd'
if freeing then
  state = 'f'
end
if recordStored then
  redis.call('DEL', KEYS[1])
end
redis.call(
  'HSET', KEYS[1],
  's', state,
  'le', int(leaseEnd),
  't', int(tokens),
  'u', int(micros),
  'x', int(now + windowMs),
  'ci', int(actualIn),
  'co', int(actualOut),
  'cu', int(actualUsd),
  'lt', lateFlag
)
redis.call('PEXPIRE', KEYS[1], int(windowMs))

return report(status, actualIn, actualOut, actualUsd, tokens, micros, late)
