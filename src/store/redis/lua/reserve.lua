--[[
  Decides a request against every applicable limit, then charges all of them or none.

  A request_id already admitted returns its first reservation and charges nothing. Denied requests
  charge nothing and are not remembered, nor are requests whose settlement charged nothing (state f).
  Concurrency leases found expired are reclaimed and counted. A reservation's budget charges are also
  held (in the budget's field: see includes/budget) until it settles or its lease ends, so that a denial
  can tell a budget held by requests in flight from one that is spent.

  A reserve that starts after its deadline (ARGV[9], compared with Redis TIME even under a test clock)
  judges and charges nothing and answers 3: its caller has stopped waiting and answered by its
  failure policy. This assumes the caller's clock and Redis's agree to within a few milliseconds (NTP);
  skew only widens the window in which a late answer is cancelled by the authority instead.

  Input:
    KEYS[1]       the reservation record (hash: see readReservation in includes/common)
    KEYS[1 + i]   the counter of limit i, for i = 1..n:
                    rate, budget: the counters hash of its scope (subject or org), field R<name> or
                            B<name> (and P<name>): see includes/counters, rate and budget
                    concurrency: sorted set {lease member = lease end ms, '~' = the set's logical expiry}
    KEYS[n + 2 ..] the nonce and the event keys, as ARGV[11 + n ..] below say

    ARGV[1]       now in ms, or '' for Redis TIME
    ARGV[2]       mode: 'reserve' (check and charge), 'dry' (check only), 'peek' (report, costs ignored)
    ARGV[3]       lease ms
    ARGV[4]       idempotency window ms
    ARGV[5]       this request's lease member
    ARGV[6]       reserved tokens (remembered, reported)
    ARGV[7]       reserved micro-dollars (remembered, reported)
    ARGV[8]       n, the number of limits
    ARGV[9]       deadline in Unix ms (real time), or 0 for none
    ARGV[10]      the longest retry a denial by requests in flight suggests, ms (CONCURRENCY_RETRY_CAP_MS)
    ARGV[11 ...]  n limit specs, one value each of 10 space-separated fields: kind (r|b|c), limit, cost,
                  shadow (0|1), measure, name, then rate: window ms, 0, 0, 0; budget: b0, b1, b2, b3;
                  concurrency: 0, 0, 0, 0
    ARGV[11 + n]  how long a signed request's nonce is remembered, ms; '' when the request carries none
    ARGV[12 + n ...] the event context and thresholds (see includes/events.lua; '' when alerts are off)
    KEYS[n + 2]   the nonce (string, in the org's slot), only when ARGV[11 + n] is not ''; the event
                  keys follow it (or take its place): records, outbox, log, then the anomaly baseline

  Output: { outcome (0 denied, 1 admitted, 2 duplicate, 3 past its deadline, 4 nonce used before,
            5 blocked for a usage anomaly: its end in place of the lease end), now, lease end,
            reserved tokens, reserved micro-dollars, expired leases, then per limit 9 values:
            used, remaining, reset after ms, exceeded (0|1), retry after ms, period start, period end,
            reserved by requests in flight, held (0|1: exceeded only because of those),
            then, when admitted, the number of events raised and one line per event (see includes/events) }
]]

--- @include "includes/common"

local now = clockNow(ARGV[1])
local mode = ARGV[2]
local leaseMs = tonumber(ARGV[3])
local windowMs = tonumber(ARGV[4])
local member = ARGV[5]
local n = tonumber(ARGV[8])
local deadline = tonumber(ARGV[9])
local counters = { expired = 0 }
local retryCapMs = tonumber(ARGV[10])
local specs = readSpecs(n, 11)

--- @include "includes/events"

-- After the specs: the nonce's TTL (and its key), then the event arguments (and their keys).
local nonceAt = 11 + n * SPEC_WIDTH
local nonceTtl = ARGV[nonceAt]
local keyAt = n + 2
local nonceKey = nil
if nonceTtl ~= nil and nonceTtl ~= '' then
  nonceKey = KEYS[keyAt]
  keyAt = keyAt + 1
end
local alertsAt = nonceAt + 1
local eventCtx = eventContext(alertsAt)
local eventKeys = { KEYS[keyAt], KEYS[keyAt + 1], KEYS[keyAt + 2] }
local anomalyKey = KEYS[keyAt + 3]
local anomaly = nil
if eventCtx then
  anomaly = anomalySpec(alertsAt, n)
end

local function report(outcome, leaseEnd, tokens, micros, states)
  local out = { outcome, now, leaseEnd, tokens, micros, counters.expired }
  for i = 1, n do
    pushState(out, states[i])
  end
  return out
end

if mode == 'reserve' and deadline > 0 then
  local realNow = now
  if ARGV[1] ~= '' then
    realNow = clockNow('')
  end
  if realNow >= deadline then
    local out = { 3, now, 0, 0, 0, 0 }
    for _ = 1, n do
      pushState(out, UNJUDGED)
    end
    return out
  end
end

-- Counters the earlier layout still holds are read only when there are any (one EXISTS for all).
local folding = legacyPresent(specs)
loadCounters(specs)

-- Whether a reservation record is stored under this request_id, live or past its expiry.
local stored = false
if mode ~= 'peek' then
  local existing
  existing, stored = readReservation(KEYS[1], now)
  if existing and existing.state ~= 'f' then
    local states = {}
    for i = 1, n do
      states[i] = judge(specs[i], 0, now, counters, retryCapMs, folding)
    end
    return report(2, existing.leaseEnd, existing.tokens, existing.micros, states)
  end
end

-- A nonce used before refuses the request unjudged; only an admitted request consumes one (below), so
-- of two replicas racing with one signed request, exactly one is admitted.
if nonceKey and mode == 'reserve' and redis.call('EXISTS', nonceKey) == 1 then
  local out = { 4, now, 0, 0, 0, 0 }
  for _ = 1, n do
    pushState(out, UNJUDGED)
  end
  return out
end

-- A subject blocked for a usage anomaly is denied until its cool-down ends (outcome 5, the end in place
-- of the lease end).
if anomaly and mode ~= 'peek' then
  local untilMs = blockedUntil(anomalyKey, now)
  if untilMs > 0 then
    local out = { 5, now, untilMs, 0, 0, 0 }
    for i = 1, n do
      pushState(out, judge(specs[i], 0, now, counters, retryCapMs, folding))
    end
    out[6] = counters.expired
    return out
  end
end

local states = {}
local denied = false
for i = 1, n do
  local cost = specs[i].cost
  if mode == 'peek' then
    cost = 0
  end
  states[i] = judge(specs[i], cost, now, counters, retryCapMs, folding)
  if states[i].exceeded and not specs[i].shadow then
    denied = true
  end
end

if mode ~= 'reserve' or denied then
  local outcome = 1
  if denied then
    outcome = 0
  end
  return report(outcome, 0, 0, 0, states)
end

local leaseEnd = now + leaseMs
local charges = {}
local recordKeys = keyContext(KEYS[1])
for i = 1, n do
  local spec, st = specs[i], states[i]
  local key, cost = spec.key, spec.cost
  if spec.kind == 'r' then
    local W = spec.a
    writeWindow(spec, st.bucket, W, st.current + cost, st.previous, st.sameWindow, now)
    if cost > 0 then
      st.reset = 2 * W - st.elapsed
    end
  elseif spec.kind == 'b' then
    local settleFor = leaseMs + windowMs
    chargeBudget(spec, st.budget, st.bucket, cost, now, st.pend - now + settleFor, settleFor, leaseEnd)
    if cost > 0 then
      st.reserved = st.reserved + cost
      st.reset = st.pend - now
      if eventCtx then
        local thresholds = limitThresholds(alertsAt, i)
        crossThresholds(eventCtx, eventKeys, thresholds, legacyOf(spec), spec.limit, st.pstart, st.pend, st.used, st.used + cost, now)
      end
    end
  else
    st.reset = math.max(st.reset, leaseEnd - now)
    -- Kept a lease longer than its last lease, so a returning caller still sees (and counts) expired leases.
    local life = st.reset + leaseMs
    redis.call('ZADD', key, int(leaseEnd), member, int(now + life), HORIZON)
    redis.call('PEXPIRE', key, int(life))
  end
  st.used = st.used + cost
  st.remaining = max0(spec.limit - st.used)
  if spec.field then
    charges[i] = table.concat({ spec.kind, spec.scope, spec.field, int(st.bucket), int(cost), spec.measure }, '\t')
  else
    charges[i] = table.concat({ spec.kind, relativeKey(recordKeys, key), int(st.bucket), int(cost), spec.measure }, '\t')
  end
end
flushCounters()

if stored then
  redis.call('DEL', KEYS[1])
end
-- The record (see readReservation): its state, lease end, reserved amounts and logical expiry, then one
-- field per charge.
local record = { 'HSET', KEYS[1], 's', 'r', 'le', int(leaseEnd), 't', ARGV[6], 'u', ARGV[7], 'x', int(now + leaseMs + windowMs) }
for i = 1, n do
  record[#record + 1] = tostring(i)
  record[#record + 1] = charges[i]
end
redis.call(unpack(record))
redis.call('PEXPIRE', KEYS[1], int(leaseMs + windowMs))
if nonceKey then
  redis.call('SET', nonceKey, '1', 'PX', int(tonumber(nonceTtl)))
end

if anomaly then
  observeAnomaly(eventCtx, eventKeys, anomaly, anomalyKey, now, tonumber(ARGV[6]))
end

return pushRaised(report(1, leaseEnd, tonumber(ARGV[6]), tonumber(ARGV[7]), states))
