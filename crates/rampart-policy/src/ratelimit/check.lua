-- Rampart rate-limit check: one atomic step for one key, the same arithmetic as
-- rampart_policy::ratelimit::Counting (sliding window or GCRA, graduated thresholds,
-- holds, distinct values). Time is the Redis server's, so every edge agrees.
--
-- KEYS[1]  the key's hash (fields w p c: windows; t1..t4: GCRA arrival times;
--          hu hl: held until / held level); distinct values in sets KEYS[1]:d:<window>
-- ARGV     1 hits to count ('1'; more for several hits of a sliding window at once; '0'
--          only reads); 2 algorithm ('0' sliding window, '1' GCRA);
--          3 window (ms); 4 the counted value's hash ('' when counting requests);
--          5 n; then n thresholds; then n holds (ms)
-- returns  { count x 1000, level (-1: none), held for (ms, -1: not held), level held
--          before this step (-1: none) }
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local hits = tonumber(ARGV[1]) or 0
local counting = hits > 0
local gcra = ARGV[2] == '1'
local w = tonumber(ARGV[3])
local value = ARGV[4]
local n = tonumber(ARGV[5])
local th, hold = {}, {}
local maxhold = 0
for i = 1, n do
  th[i] = tonumber(ARGV[5 + i])
  hold[i] = tonumber(ARGV[5 + n + i])
  if hold[i] > maxhold then maxhold = hold[i] end
end
-- Numbers beyond 14 digits must not be written in Lua's default %.14g.
local function int(x) return string.format('%.0f', x) end
local function level_of(c)
  local l = -1
  for i = 1, n do
    if c > th[i] then l = i - 1 end
  end
  return l
end
local st = redis.call('HMGET', key, 'w', 'p', 'c', 'hu', 'hl', 't1', 't2', 't3', 't4')
local hu = tonumber(st[4]) or 0
local hl = tonumber(st[5]) or -1
local held = -1
if hu > now then held = hl end
local count, level = 0, -1
local touch = true
if not gcra then
  local win = tonumber(st[1]) or -1
  local prev = tonumber(st[2]) or 0
  local cur = tonumber(st[3]) or 0
  local idx = math.floor(now / w)
  -- A new key or a new window: the key's expiry moves (once per window, not per check).
  touch = idx ~= win
  if idx ~= win then
    if idx == win + 1 then prev = cur else prev = 0 end
    cur = 0
  end
  local weight = 1 - (now % w) / w
  if value ~= '' then
    local ck = key .. ':d:' .. int(idx)
    local pk = key .. ':d:' .. int(idx - 1)
    if counting then
      -- One more than the highest threshold is all that is needed to know.
      if redis.call('SCARD', ck) <= th[n] then redis.call('SADD', ck, value) end
      redis.call('PEXPIRE', ck, 2 * w + 1000)
    end
    local older = 0
    for _, v in ipairs(redis.call('SMEMBERS', pk)) do
      if redis.call('SISMEMBER', ck, v) == 0 then older = older + 1 end
    end
    count = redis.call('SCARD', ck) + older * weight
  else
    cur = cur + hits
    count = prev * weight + cur
  end
  redis.call('HSET', key, 'w', int(idx), 'p', prev, 'c', cur)
  level = level_of(count)
else
  local now_us = now * 1000
  for i = 1, n do
    local limit = math.max(th[i], 1)
    local tt = math.max(math.floor(w * 1000 / limit), 1)
    local tau = tt * limit
    local tat = tonumber(st[5 + i]) or 0
    if counting then
      local nxt = math.max(tat, now_us) + tt
      if nxt - now_us > tau then
        -- Not conforming: the arrival time does not move for a refused request.
        level = i - 1
      else
        redis.call('HSET', key, 't' .. i, int(nxt))
      end
      if i == 1 or level == i - 1 then count = (nxt - now_us) / tt end
    elseif i == 1 then
      count = math.max(tat - now_us, 0) / tt
    end
  end
  if not counting then level = level_of(count) end
end
if counting and level >= 0 and hold[level + 1] > 0 and (held < 0 or level > held) then
  hu = now + hold[level + 1]
  hl = level
  redis.call('HSET', key, 'hu', int(hu), 'hl', hl)
  touch = true
end
local held_now = -1
if hu > now then held_now = hl end
if held_now > level then level = held_now end
local held_for = -1
if held_now >= 0 then held_for = hu - now end
if touch then redis.call('PEXPIRE', key, 2 * w + maxhold + 1000) end
return { math.floor(count * 1000 + 0.5), level, held_for, held }
