-- Rate limits: the sliding-window counter.
-- Twin of src/store/memory-rate.ts (the in-process store's same arithmetic). Edit both;
-- test/integration/store-equivalence.test.ts is the guard that keeps them equal.

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

-- Judges a rate limit's window at `now` into `st` (see judge in common.lua).
local function judgeRate(st, key, spec, cost, now)
  local limit = spec.limit
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
end
