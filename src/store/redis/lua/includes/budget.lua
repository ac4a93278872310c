-- Budget limits: calendar periods, and what reservations in flight hold of them.
-- Twin of src/store/memory-budget.ts (the in-process store's same arithmetic). Edit both;
-- test/integration/store-equivalence.test.ts is the guard that keeps them equal.
--
-- A budget's fields in its counters hash (see counters.lua):
--   B<limit>  the latest period charged: '<start> <charged>', and while reservations in flight hold part
--             of it, '<start> <charged> <held> <their latest lease end - start>'
--   P<limit>  the period before it, '<start> <charged>', kept while a late settlement may still move it
-- The earlier layout's key held, per period start, the charge (`<start>`), the amount held (`h<start>`)
-- and the latest lease end (`e<start>`).

-- Adds `amount` charged to period `start` of budget state `b`, which keeps the latest two periods.
local function addPeriod(b, start, amount)
  if start == b.start then
    b.amount = b.amount + amount
  elseif start == b.prevStart then
    b.prevAmount = b.prevAmount + amount
  elseif b.start == nil or start > b.start then
    b.prevStart, b.prevAmount = b.start, b.amount
    b.start, b.amount, b.held, b.heldUntil = start, amount, 0, 0
  elseif b.prevStart == nil or start > b.prevStart then
    b.prevStart, b.prevAmount = start, amount
  end
end

-- Folds the earlier layout's key of budget `spec` into state `b`.
local function foldBudget(b, spec)
  local flat = redis.call('HGETALL', legacyOf(spec))
  if #flat == 0 then
    return
  end
  local holds = {}
  for i = 1, #flat, 2 do
    local field, value = flat[i], tonumber(flat[i + 1])
    local start = tonumber(field)
    if start then
      addPeriod(b, start, value)
    else
      holds[field] = value
    end
  end
  if b.start then
    local held, heldUntil = holds['h' .. int(b.start)], holds['e' .. int(b.start)]
    if held and heldUntil then
      b.held = b.held + held
      b.heldUntil = math.max(b.heldUntil, heldUntil)
    end
  end
  spec.folded = true
end

-- Budget `spec`'s stored periods, with what the earlier layout holds added when `folding`:
-- { start, amount, held, heldUntil, prevStart, prevAmount } (start nil: nothing charged).
local function readBudget(spec, folding)
  local b = { amount = 0, held = 0, heldUntil = 0, prevAmount = 0 }
  local latest = counterGet(spec.key, spec.field) or ''
  local start, amount, held, heldFor = string.match(latest, '^(%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+)$')
  if not start then
    start, amount = string.match(latest, '^(%-?%d+) (%-?%d+)$')
  end
  if start then
    b.start, b.amount = tonumber(start), tonumber(amount)
    if held then
      b.held, b.heldUntil = tonumber(held), b.start + tonumber(heldFor)
    end
  end
  start, amount = string.match(counterGet(spec.key, 'P' .. spec.name) or '', '^(%-?%d+) (%-?%d+)$')
  if start then
    b.prevStart, b.prevAmount = tonumber(start), tonumber(amount)
  end
  if folding then
    foldBudget(b, spec)
  end
  return b
end

-- Writes budget state `b`: its hold only while it lasts (past its end it counts for nothing), the period
-- before only when `keepBefore`.
local function writeBudget(spec, b, now, keepBefore)
  local latest = int(b.start) .. ' ' .. int(b.amount)
  if b.heldUntil > now then
    latest = latest .. ' ' .. int(b.held) .. ' ' .. int(b.heldUntil - b.start)
  end
  counterWrite(spec, latest)
  if keepBefore and b.prevStart then
    counterSet(spec.key, 'P' .. spec.name, int(b.prevStart) .. ' ' .. int(b.prevAmount))
  elseif counterGet(spec.key, 'P' .. spec.name) then
    counterSet(spec.key, 'P' .. spec.name, nil)
  end
end

-- A reservation's charge of `cost` to the latest period, held until it settles or its lease ends.
-- Once every earlier lease has ended (now >= heldUntil), what they held counts as spent: start afresh.
local function holdBudget(b, cost, now, leaseEnd)
  if now >= b.heldUntil then
    b.held, b.heldUntil = cost, leaseEnd
    return
  end
  b.held = b.held + cost
  b.heldUntil = math.max(b.heldUntil, leaseEnd)
end

-- Adds `cost` to period `pstart` of budget `spec` and writes it; when that starts a period, or folds in
-- the earlier layout, the hash is asked to live `ttl` more (to the period's end, plus what a
-- reservation's settlement may take). The period before is kept while it is one the limit's bounds
-- still name (from spec.a) and, with `keptFor`, less than that long into the latest: no settlement
-- reaches it later. A reservation's charge (with its `leaseEnd`) is also held.
local function chargeBudget(spec, b, pstart, cost, now, ttl, keptFor, leaseEnd)
  local starts = b.start ~= pstart
  addPeriod(b, pstart, cost)
  if leaseEnd and cost > 0 and b.start == pstart then
    holdBudget(b, cost, now, leaseEnd)
  end
  if starts or spec.folded then
    counterTtl(spec.key, ttl)
  end
  local keepBefore = b.prevStart ~= nil and b.prevStart >= spec.a and (keptFor == nil or now < b.start + keptFor)
  writeBudget(spec, b, now, keepBefore)
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
local function judgeBudget(st, spec, cost, now, retryCapMs, folding)
  local limit = spec.limit
  local pstart, pend = periodAt(spec, now)
  local b = readBudget(spec, folding)
  local used, heldUntil, reserved = 0, 0, 0
  if b.start == pstart then
    used, heldUntil = b.amount, b.heldUntil
    if now < heldUntil then
      reserved = math.min(used, b.held)
    end
  elseif b.prevStart == pstart then
    used = b.prevAmount
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
  st.pstart, st.pend, st.bucket, st.budget = pstart, pend, pstart, b
end

-- Moves a reservation's charge of `amount` to period `bucket` of budget state `b` by `delta` (actual -
-- reserved), and gives back what it held unless it settles `late` (its hold ended with its lease, and may
-- have started afresh since). Returns the period's charge before and after, or nil when the period is gone.
local function adjustBudget(b, bucket, delta, amount, late)
  if b.start == bucket then
    local spent = b.amount
    b.amount = max0(spent + delta)
    if not late then
      b.held = max0(b.held - amount)
    end
    return spent, b.amount
  elseif b.prevStart == bucket then
    local spent = b.prevAmount
    b.prevAmount = max0(spent + delta)
    return spent, b.prevAmount
  end
  return nil
end
