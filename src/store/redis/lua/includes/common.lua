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

-- A limit spec is SPEC_WIDTH values: kind, limit, cost, shadow, measure, then four kind-specific values
-- (rate: window ms; budget: the four period boundaries b0..b3).
local SPEC_WIDTH = 9

-- The n limit specs starting at ARGV[first].
local function readSpecs(n, first)
  local specs = {}
  for i = 1, n do
    local base = first + (i - 1) * SPEC_WIDTH
    specs[i] = {
      kind = ARGV[base],
      limit = tonumber(ARGV[base + 1]),
      cost = tonumber(ARGV[base + 2]),
      shadow = ARGV[base + 3] == '1',
      measure = ARGV[base + 4],
      a = tonumber(ARGV[base + 5]),
      b = tonumber(ARGV[base + 6]),
      c = tonumber(ARGV[base + 7]),
      d = tonumber(ARGV[base + 8]),
    }
  end
  return specs
end

--- @include "includes/rate"

--- @include "includes/budget"

--- @include "includes/concurrency"

-- Judges one limit for a charge of `cost` at `now`. Returns a state table: used, remaining, reset,
-- exceeded, retry, pstart, pend, reserved and held (budgets), and `bucket` (window index or period start).
-- A denial that requests in flight cause suggests a retry of at most `retryCapMs` (the caller's
-- CONCURRENCY_RETRY_CAP_MS): they usually finish long before their lease ends.
local function judge(key, spec, cost, now, counters, retryCapMs)
  local st = {
    used = 0, remaining = 0, reset = 0, exceeded = false, retry = 0, pstart = 0, pend = 0, bucket = 0,
    reserved = 0, held = false,
  }
  if spec.kind == 'r' then
    judgeRate(st, key, spec, cost, now)
  elseif spec.kind == 'b' then
    judgeBudget(st, key, spec, cost, now, retryCapMs)
  else
    judgeLeases(st, key, spec, cost, now, counters, retryCapMs)
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

-- Reads a reservation record; a record past its logical expiry (field x) counts as absent, so that
-- time driven by a test clock forgets it exactly as real time would. The second value says whether a
-- record is stored at all, live or not (one to delete before writing anew).
local function readReservation(key, now)
  local r = redis.call('HMGET', key, 's', 'le', 't', 'u', 'x', 'ci', 'co', 'cu', 'lt', 'ch')
  if not r[1] then
    return nil, false
  end
  if now >= tonumber(r[5]) then
    return nil, true
  end
  return {
    state = r[1],
    leaseEnd = tonumber(r[2]),
    tokens = tonumber(r[3]),
    micros = tonumber(r[4]),
    chargedIn = tonumber(r[6]) or 0,
    chargedOut = tonumber(r[7]) or 0,
    chargedUsd = tonumber(r[8]) or 0,
    late = r[9] == '1',
    charges = r[10] or '',
  }, true
end
