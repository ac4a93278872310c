-- Budget threshold events, decided in the script that moves the budget (see src/store/event-keys.ts for
-- the keys). A crossing is recorded once per (counter, period, threshold) by a fired marker in the
-- counter's own slot, so however many authorities and concurrent requests cross it, one event is
-- written to the org's outbox. A settlement that moves the amount back below does not clear a marker.
--
-- The caller appends to the script's ARGV, after the limit specs:
--   ARGV[at .. at + 5]   the event context: org ('' when alerts are off, and nothing follows), subject,
--                        tier, key id, queue (1: deliver, 0: record only), kept ms
--   ARGV[at + 5 + i]     limit i's thresholds: name, unit, then label=amount pairs, separated by tabs;
--                        '' for none
-- and three keys (reserve.lua: right after the nonce key when there is one, else from KEYS[n + 2];
-- settle.lua: KEYS[n + 2] .. KEYS[n + 4]): the org's event records (hash), outbox (zset id -> due ms)
-- and log (zset id -> created ms).

local EVENT_LOG_MAX = 1000

local function eventContext(at)
  if ARGV[at] == nil or ARGV[at] == '' then
    return nil
  end
  return {
    org = ARGV[at], subject = ARGV[at + 1], tier = ARGV[at + 2], keyId = ARGV[at + 3],
    queue = ARGV[at + 4] == '1', keptMs = tonumber(ARGV[at + 5]),
  }
end

-- Limit i's thresholds, or nil: { name, unit, list = { { label, amount } ... } }.
local function limitThresholds(at, i)
  local text = ARGV[at + 5 + i]
  if text == nil or text == '' then
    return nil
  end
  local parts = {}
  for part in string.gmatch(text .. '\t', '([^\t]*)\t') do
    parts[#parts + 1] = part
  end
  local list = {}
  for j = 3, #parts do
    local label, amount = string.match(parts[j], '^([^=]+)=(%d+)')
    list[#list + 1] = { label, tonumber(amount) }
  end
  return { name = parts[1], unit = parts[2], list = list }
end

-- Writes one event to the org's records, log and (when delivered) outbox.
local function pushEvent(ctx, eventKeys, id, now, record)
  local records, outbox, log = eventKeys[1], eventKeys[2], eventKeys[3]
  redis.call('HSET', records, id, record, id .. ':s', 'pending\t0\t')
  if ctx.queue then
    redis.call('ZADD', outbox, int(now), id)
  else
    redis.call('HSET', records, id .. ':s', 'recorded\t0\t')
  end
  redis.call('ZADD', log, int(now), id)
  if redis.call('ZCARD', log) > EVENT_LOG_MAX then
    -- The oldest leave the log; one still waiting for delivery keeps its record until it is done.
    for _, old in ipairs(redis.call('ZRANGE', log, 0, -EVENT_LOG_MAX - 1)) do
      if not redis.call('ZSCORE', outbox, old) then
        redis.call('HDEL', records, old, old .. ':s')
      end
    end
    redis.call('ZREMRANGEBYRANK', log, 0, -EVENT_LOG_MAX - 1)
  end
  for _, key in ipairs(eventKeys) do
    redis.call('PEXPIRE', key, int(ctx.keptMs))
  end
end

-- The events a script raised, as the caller reports them: type, id, limit name, threshold (tab-separated).
local raisedEvents = {}

-- Appends the count and the events raised to a script's output.
local function pushRaised(out)
  out[#out + 1] = #raisedEvents
  for _, line in ipairs(raisedEvents) do
    out[#out + 1] = line
  end
  return out
end

-- Raises one event per threshold that a move of budget `key` (of `limit`) from `before` to `after` crosses
-- for the first time in period [pstart, pend).
local function crossThresholds(ctx, eventKeys, thresholds, key, limit, pstart, pend, before, after, now)
  if ctx == nil or thresholds == nil or after <= before then
    return
  end
  local markers = key .. ':fired'
  for _, t in ipairs(thresholds.list) do
    local label, amount = t[1], t[2]
    if before < amount and after >= amount then
      if redis.call('HSETNX', markers, int(pstart) .. ':' .. label, int(now)) == 1 then
        -- Kept until the period cannot be charged any more.
        redis.call('PEXPIRE', markers, int(math.max(pend - now, 0) + ctx.keptMs))
        local id = 'evt_' .. string.sub(redis.sha1hex(key .. '\n' .. int(pstart) .. '\n' .. label), 1, 24)
        local record = cjson.encode({
          id = id,
          type = 'budget.threshold',
          created_ms = int(now),
          threshold = label,
          limit = {
            name = thresholds.name,
            unit = thresholds.unit,
            limit = int(limit),
            used = int(after),
            period_start_ms = int(pstart),
            period_end_ms = int(pend),
          },
          principal = { org = ctx.org, subject = ctx.subject, tier = ctx.tier, key_id = ctx.keyId },
        })
        pushEvent(ctx, eventKeys, id, now, record)
        raisedEvents[#raisedEvents + 1] = 'budget.threshold\t' .. id .. '\t' .. thresholds.name .. '\t' .. label
      end
    end
  end
end

-- Anomaly detection (src/core/anomaly.ts observeUsage computes the same). After the thresholds:
--   ARGV[at + 6 + n .. at + 13 + n]   factor, interval ms, half-life ms, min history ms, min requests,
--                                      min tokens, cool-down ms, action (alert|block); '' when off
-- and the key after the three event keys (reserve.lua only): the subject's baseline (hash: i interval,
-- r/k its requests and tokens, br/bk the baselines, h history ms, q quiet until ms, bu blocked until ms, x its logical expiry, so that a test
-- clock forgets it as the in-process store does).
local function anomalySpec(at, n)
  local base = at + 6 + n
  if ARGV[base] == nil or ARGV[base] == '' then
    return nil
  end
  return {
    factor = tonumber(ARGV[base]), interval = tonumber(ARGV[base + 1]), halfLife = tonumber(ARGV[base + 2]),
    minHistory = tonumber(ARGV[base + 3]), minRequests = tonumber(ARGV[base + 4]),
    minTokens = tonumber(ARGV[base + 5]), cooldown = tonumber(ARGV[base + 6]), action = ARGV[base + 7],
  }
end

-- When a `block` anomaly's cool-down ends, or 0 when the subject is not blocked.
local function blockedUntil(key, now)
  local stored = redis.call('HMGET', key, 'bu', 'x')
  local untilMs = tonumber(stored[1]) or 0
  if untilMs > now and now < (tonumber(stored[2]) or 0) then
    return untilMs
  end
  return 0
end

local function observeAnomaly(ctx, eventKeys, spec, key, now, tokens)
  local s = redis.call('HMGET', key, 'i', 'r', 'k', 'br', 'bk', 'h', 'q', 'bu', 'x')
  if s[9] and now >= tonumber(s[9]) then
    s = {}
  end
  local index = math.floor(now / spec.interval)
  local i = tonumber(s[1]) or index
  local r, k = tonumber(s[2]) or 0, tonumber(s[3]) or 0
  local br, bk, h = tonumber(s[4]) or 0, tonumber(s[5]) or 0, tonumber(s[6]) or 0
  local quiet, blocked = tonumber(s[7]) or 0, tonumber(s[8]) or 0
  if i < index then
    local alpha = 0.5 ^ (spec.interval / spec.halfLife)
    local decay = alpha ^ (index - i - 1)
    br = (br * alpha + r * (1 - alpha)) * decay
    bk = (bk * alpha + k * (1 - alpha)) * decay
    h = h + (index - i) * spec.interval
    i, r, k = index, 0, 0
  end
  r = r + 1
  k = k + tokens
  if h >= spec.minHistory and now >= quiet then
    -- The average started from 0: divided by the weight its intervals have so far, it is not biased low.
    local weight = 1 - (0.5 ^ (spec.interval / spec.halfLife)) ^ (h / spec.interval)
    local measure, observed, baseline
    if r >= spec.minRequests and r > spec.factor * br / weight then
      measure, observed, baseline = 'requests', r, br / weight
    elseif k >= spec.minTokens and k > spec.factor * bk / weight then
      measure, observed, baseline = 'tokens', k, bk / weight
    end
    if measure then
      quiet = now + spec.cooldown
      blocked = 0
      if spec.action == 'block' then
        blocked = quiet
      end
      local id = 'evt_' .. string.sub(redis.sha1hex(key .. '\n' .. int(now)), 1, 24)
      local record = cjson.encode({
        id = id,
        type = 'usage.anomaly',
        created_ms = int(now),
        threshold = tostring(spec.factor),
        anomaly = {
          measure = measure, interval_ms = int(spec.interval), observed = int(observed),
          baseline = string.format('%.3f', baseline), factor = tostring(spec.factor), action = spec.action,
          blocked_until_ms = int(blocked),
        },
        principal = { org = ctx.org, subject = ctx.subject, tier = ctx.tier, key_id = ctx.keyId },
      })
      pushEvent(ctx, eventKeys, id, now, record)
      raisedEvents[#raisedEvents + 1] = 'usage.anomaly\t' .. id .. '\t' .. measure .. '\t' .. tostring(spec.factor)
    end
  end
  local kept = math.max(spec.halfLife * 16, spec.minHistory * 2, spec.cooldown) + ctx.keptMs
  redis.call(
    'HSET', key, 'i', int(i), 'r', int(r), 'k', int(k), 'br', string.format('%.17g', br),
    'bk', string.format('%.17g', bk), 'h', int(h), 'q', int(quiet), 'bu', int(blocked), 'x', int(now + kept)
  )
  redis.call('PEXPIRE', key, int(kept))
end
