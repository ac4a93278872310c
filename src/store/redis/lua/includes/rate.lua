-- Rate limits: the sliding-window counter.
-- Twin of src/store/memory-rate.ts (the in-process store's same arithmetic). Edit both;
-- test/integration/store-equivalence.test.ts is the guard that keeps them equal.
--
-- A rate limit's field in its counters hash (see counters.lua), R<limit>: '<window index> <current count>
-- <previous count>'. The earlier layout's key held the same as a hash {w, c, p}.

-- The counts of a window stored at `w` as seen from window `index`: rolled forward one window, or
-- cleared when further behind.
local function countsAt(w, current, previous, index)
  if w == index then
    return current, previous
  elseif w == index - 1 then
    return 0, current
  end
  return 0, 0
end

-- A rate field's window index and counts, or nil.
local function parseWindow(value)
  if not value then
    return nil
  end
  local w, c, p = string.match(value, '^(%-?%d+) (%d+) (%d+)$')
  if not w then
    return nil
  end
  return tonumber(w), tonumber(c), tonumber(p)
end

-- The window counts of rate limit `spec` seen from window `index`, with what the earlier layout holds
-- added when `folding`. The third value says whether the stored counts were already at `index` (false:
-- rolled, new, or folded in: the write sets the time to live).
local function rollWindow(spec, index, folding)
  local w, c, p = parseWindow(counterGet(spec.key, spec.field))
  local current, previous, sameWindow = 0, 0, w == index
  if w then
    current, previous = countsAt(w, c, p, index)
  end
  if folding then
    local old = redis.call('HMGET', legacyOf(spec), 'w', 'c', 'p')
    if old[1] then
      local oldCurrent, oldPrevious = countsAt(tonumber(old[1]), tonumber(old[2]) or 0, tonumber(old[3]) or 0, index)
      current, previous, sameWindow = current + oldCurrent, previous + oldPrevious, false
      spec.folded = true
    end
  end
  return current, previous, sameWindow
end

-- Writes rate limit `spec`'s counts at window `index`. They matter until window index + 1 ends, so the
-- hash's time to live is asked for only when the field moves to a new window: every write within a
-- window finds it long enough already.
local function writeWindow(spec, index, W, current, previous, sameWindow, now)
  counterWrite(spec, int(index) .. ' ' .. int(current) .. ' ' .. int(previous))
  if not sameWindow then
    counterTtl(spec.key, (index + 2) * W - now)
  end
end

-- Moves a charge of window `bucket` by `delta` in a window stored as `value`; returns the new value, or
-- nil when that window has left the count.
local function adjustWindow(value, bucket, delta)
  local w, c, p = parseWindow(value)
  if w == bucket then
    c = max0(c + delta)
  elseif w == bucket + 1 then
    p = max0(p + delta)
  else
    return nil
  end
  return int(w) .. ' ' .. int(c) .. ' ' .. int(p)
end

-- Judges a rate limit's window at `now` into `st` (see judge in common.lua).
local function judgeRate(st, spec, cost, now, folding)
  local limit = spec.limit
  local W = spec.a
  local index = math.floor(now / W)
  local elapsed = now - index * W
  local current, previous, sameWindow = rollWindow(spec, index, folding)
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
