-- Concurrency limits: a sorted set of leases.
-- Twin of src/store/memory-concurrency.ts (the in-process store's same arithmetic). Edit both;
-- test/integration/store-equivalence.test.ts is the guard that keeps them equal.

-- Lease members are `subject:request`, always with a colon, so this name never collides with one.
local HORIZON = '~'

-- Judges a concurrency limit's live leases at `now` into `st`, reclaiming expired ones (see judge in
-- common.lua).
local function judgeLeases(st, key, spec, cost, now, counters, retryCapMs)
  local limit = spec.limit
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
      st.retry = math.min(retryCapMs, math.max(1, earliest - now))
    end
    st.reset = latest - now
  end
end
