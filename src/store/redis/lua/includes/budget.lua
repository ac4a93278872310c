-- Budget limits: calendar periods, and what reservations in flight hold of them.
-- Twin of src/store/memory-budget.ts (the in-process store's same arithmetic). Edit both;
-- test/integration/store-equivalence.test.ts is the guard that keeps them equal.

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

-- Judges a budget's period at `now` into `st` (see judge in common.lua).
local function judgeBudget(st, key, spec, cost, now, retryCapMs)
  local limit = spec.limit
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
    st.retry = math.min(retryCapMs, math.max(1, heldUntil - now))
  elseif st.exceeded and cost <= limit then
    st.retry = pend - now
  end
  if used > 0 then
    st.reset = pend - now
  end
  st.pstart, st.pend, st.bucket, st.heldUntil = pstart, pend, pstart, heldUntil
end
