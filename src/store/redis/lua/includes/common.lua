-- Shared pieces of quotad's scripts. The arithmetic mirrors src/core (sliding-window.ts, judge.ts,
-- calendar.ts periodAt, quota.ts measuredAmount); the contract suite holds both to the same answers.

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

-- The window counts seen from window `index`: rolled forward one window, or cleared when further behind.
-- The third value says whether the stored counts were already at `index` (false: rolled, or new).
local function rollWindow(key, index)
  local stored = redis.call('HMGET', key, 'w', 'c', 'p')
  local w = tonumber(stored[1])
  if w == index then
    return tonumber(stored[2]) or 0, tonumber(stored[3]) or 0, true
  elseif w == index - 1 then
    return 0, tonumber(stored[2]) or 0, false
  end
  return 0, 0, false
end

-- Writes a rate counter at window `index`. Its counts matter until window index + 1 ends, so its
-- time to live is set only when it moves to a new window: one command fewer on every other write.
local function writeWindow(key, index, W, current, previous, sameWindow, now)
  redis.call('HSET', key, 'w', int(index), 'c', int(current), 'p', int(previous))
  if not sameWindow then
    redis.call('PEXPIRE', key, int((index + 2) * W - now))
  end
end

-- The period start a budget field belongs to: `<start>` holds what is charged, `h<start>` what
-- reservations in flight hold of it, `e<start>` their latest lease end.
local function budgetFieldPeriod(field)
  return tonumber(field) or tonumber(string.sub(field, 2))
end

-- Adds `cost` to a budget's period `pstart`. The first charge of a period sets the key's time to live,
-- which every later charge would set to the same instant, and prunes periods no longer readable.
local function chargeBudget(key, pstart, cost, oldestKept, ttl)
  if redis.call('HINCRBY', key, int(pstart), int(cost)) == cost then
    if redis.call('HLEN', key) > 2 then
      for _, field in ipairs(redis.call('HKEYS', key)) do
        if budgetFieldPeriod(field) < oldestKept then
          redis.call('HDEL', key, field)
        end
      end
    end
    redis.call('PEXPIRE', key, int(ttl))
  end
end

-- A reservation's charge of `cost` to budget period `pstart`, held until it settles or its lease ends.
-- Once every earlier lease has ended (now >= heldUntil), what they held counts as spent: start afresh.
local function holdBudget(key, pstart, cost, now, leaseEnd, heldUntil)
  if now >= heldUntil then
    redis.call('HSET', key, 'h' .. int(pstart), int(cost), 'e' .. int(pstart), int(leaseEnd))
    return
  end
  redis.call('HINCRBY', key, 'h' .. int(pstart), int(cost))
  if leaseEnd > heldUntil then
    redis.call('HSET', key, 'e' .. int(pstart), int(leaseEnd))
  end
end

local function periodAt(spec, now)
  if now >= spec.a and now < spec.b then
    return spec.a, spec.b
  elseif now >= spec.c and now < spec.d then
    return spec.c, spec.d
  end
  return spec.b, spec.c
end

-- The longest wait a denial suggests when requests in flight block it (CONCURRENCY_RETRY_CAP_MS in
-- src/store/store.ts): they usually finish long before their lease ends.
local RETRY_CAP_MS = 1000
-- Lease members are `subject:request`, always with a colon, so this name never collides with one.
local HORIZON = '~'

-- Judges one limit for a charge of `cost` at `now`. Returns a state table: used, remaining, reset,
-- exceeded, retry, pstart, pend, reserved and held (budgets), and `bucket` (window index or period start).
local function judge(key, spec, cost, now, counters)
  local st = {
    used = 0, remaining = 0, reset = 0, exceeded = false, retry = 0, pstart = 0, pend = 0, bucket = 0,
    reserved = 0, held = false,
  }
  local limit = spec.limit
  if spec.kind == 'r' then
    local W = spec.a
    local index = math.floor(now / W)
    local elapsed = now - index * W
    local current, previous, sameWindow = rollWindow(key, index)
    local weighted = previous * (W - elapsed) + current * W
    st.used = math.ceil(weighted / W)
    st.exceeded = weighted + cost * W > limit * W
    if st.exceeded and cost <= limit then
      if current + cost <= limit then
        st.retry = W - math.floor((limit - cost - current) * W / previous) - elapsed
      else
        st.retry = W - elapsed + (W - math.floor((limit - cost) * W / current))
      end
    end
    if current > 0 then
      st.reset = 2 * W - elapsed
    elseif previous > 0 then
      st.reset = W - elapsed
    end
    st.bucket = index
    st.current, st.previous, st.elapsed, st.sameWindow = current, previous, elapsed, sameWindow
  elseif spec.kind == 'b' then
    local pstart, pend = periodAt(spec, now)
    local stored = redis.call('HMGET', key, int(pstart), 'h' .. int(pstart), 'e' .. int(pstart))
    local used = tonumber(stored[1]) or 0
    local heldUntil = tonumber(stored[3]) or 0
    local reserved = 0
    if now < heldUntil then
      reserved = math.min(used, tonumber(stored[2]) or 0)
    end
    st.used = used
    st.exceeded = used + cost > limit
    st.reserved = reserved
    st.held = st.exceeded and used - reserved + cost <= limit
    if st.held then
      st.retry = math.min(RETRY_CAP_MS, math.max(1, heldUntil - now))
    elseif st.exceeded and cost <= limit then
      st.retry = pend - now
    end
    if used > 0 then
      st.reset = pend - now
    end
    st.pstart, st.pend, st.bucket, st.heldUntil = pstart, pend, pstart, heldUntil
  else
    -- The member HORIZON holds the set's logical end of life, above every lease end: past it the set
    -- counts as absent, as a test clock drives it (real-time PEXPIRE alone could not follow that clock).
    local horizon = tonumber(redis.call('ZSCORE', key, HORIZON))
    if horizon and now >= horizon then
      redis.call('DEL', key)
      horizon = nil
    end
    counters.expired = counters.expired + redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
    local active = redis.call('ZCARD', key)
    if horizon then
      active = active - 1
    end
    st.used = active
    st.exceeded = active + cost > limit
    if active > 0 then
      local earliest = tonumber(redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')[2])
      local latest = tonumber(redis.call('ZRANGE', key, -2, -2, 'WITHSCORES')[2])
      if st.exceeded and cost <= limit then
        st.retry = math.min(RETRY_CAP_MS, math.max(1, earliest - now))
      end
      st.reset = latest - now
    end
  end
  st.remaining = max0(limit - st.used)
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
