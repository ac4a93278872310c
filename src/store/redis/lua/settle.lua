--[[
  Settles a reservation with the actual usage: every counter it charged moves by (actual - reserved) in
  the bucket it was charged to, what it held of a budget is released (unless its lease had ended), its
  concurrency lease is released, and it is marked settled. Without a reservation, the usage is charged
  directly to the limits given. A second settlement changes nothing.

  A 'failed' settlement with no tokens charges nothing (the attempt never reached the model, or a check
  was cancelled) and marks the request_id free (state f) instead: a later reserve under it is decided
  afresh, while the same settlement again is still a duplicate.

  The reservation's counter keys are read from its record (field ch); they carry KEYS[1]'s hash tag,
  so they live in the same Cluster slot.

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

--- @include "includes/events"

local alertsAt = 15 + n * SPEC_WIDTH
local eventCtx = eventContext(alertsAt)
local eventKeys = { KEYS[n + 2], KEYS[n + 3], KEYS[n + 4] }

-- Raises the events of budget `key` moving from `before` to `after` in its period starting `pstart`.
local function crossed(key, pstart, before, after)
  if not eventCtx then
    return
  end
  for i = 1, n do
    local spec = specs[i]
    if KEYS[1 + i] == key and spec.kind == 'b' and (pstart == spec.a or pstart == spec.b or pstart == spec.c) then
      local _, pend = periodAt(spec, pstart)
      local thresholds = limitThresholds(alertsAt, i)
      crossThresholds(eventCtx, eventKeys, thresholds, key, spec.limit, pstart, pend, before, after, now)
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
    pushState(out, judge(KEYS[1 + i], specs[i], 0, now, counters, retryCapMs))
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
if record then
  status, tokens, micros, leaseEnd = 1, record.tokens, record.micros, record.leaseEnd
  late = now >= record.leaseEnd
  for _, charge in ipairs(record.charges) do
    local kind, key, bucket, amount, measure = charge.kind, charge.key, charge.bucket, charge.amount, charge.measure
    local delta = measured(measure) - amount
    if kind == 'r' then
      local counts = redis.call('HMGET', key, 'w', 'c', 'p')
      local w = tonumber(counts[1])
      if w == bucket then
        redis.call('HSET', key, 'c', int(max0((tonumber(counts[2]) or 0) + delta)))
      elseif w == bucket + 1 then
        redis.call('HSET', key, 'p', int(max0((tonumber(counts[3]) or 0) + delta)))
      end
    elseif kind == 'b' then
      local held = 'h' .. int(bucket)
      local amounts = redis.call('HMGET', key, int(bucket), held)
      local spent = tonumber(amounts[1])
      if spent then
        redis.call('HSET', key, int(bucket), int(max0(spent + delta)))
        crossed(key, bucket, spent, max0(spent + delta))
      end
      -- A late settlement's hold already ended with its lease (and may have been started afresh since).
      if amounts[2] and not late then
        redis.call('HSET', key, held, int(max0(tonumber(amounts[2]) - amount)))
      end
    else
      redis.call('ZREM', key, member)
    end
  end
else
  for i = 1, n do
    local key, spec = KEYS[1 + i], specs[i]
    if spec.kind == 'r' then
      local W = spec.a
      local index = math.floor(now / W)
      local current, previous, sameWindow = rollWindow(key, index)
      writeWindow(key, index, W, current + spec.cost, previous, sameWindow, now)
    elseif spec.kind == 'b' then
      local pstart, pend = periodAt(spec, now)
      local before = 0
      if eventCtx then
        before = tonumber(redis.call('HGET', key, int(pstart))) or 0
      end
      chargeBudget(key, pstart, spec.cost, spec.a, pend - now + windowMs)
      crossed(key, pstart, before, before + spec.cost)
    end
  end
end

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
