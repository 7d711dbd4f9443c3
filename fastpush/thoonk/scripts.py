"""Lua scripts for the job life cycle (thoonk-protocol.md §8, §14.1, §15).

Each script applies, per job and atomically, exactly the writes that thoonk.py
makes for the same operation, in the same order, so old producers and old
workers on the same queue cannot tell the difference.  What the scripts add is
batching (many jobs per round trip), the atomic claim (§15.1), the claim
ownership check (§15.3), the lease reaper (§15.2) and the error record, which
lives under our own key names.

Times come from the Redis server's TIME, so every glue process shares one
clock for claim scores and lease expiry.  ``redis.replicate_commands()`` makes
TIME-then-write legal on Redis < 5 (it is a no-op from 5 on).
"""

from __future__ import annotations

# Shared prologue: ``now`` as an integer-millisecond string.  Built by string
# concatenation so no float formatting can turn it into 1.7e+12.
_NOW = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
"""

# KEYS: ids, items, claimed, cancelled
# ARGV: max jobs, claim-notice channel ('' = send none)
# Returns {now, id1, body1, count1, id2, ...}.  Ids whose body is gone (the job
# was retracted under an old client's feet) are dropped and their claim
# cleared (§14 "tolerate what old clients leave behind").
CLAIM = (
    _NOW
    + """
local out = {now}
local n = tonumber(ARGV[1])
local notice = ARGV[2]
for i = 1, n do
  local id = redis.call('RPOP', KEYS[1])
  if not id then break end
  -- The same three writes/reads as thoonk.py's claim transaction (§8.2).
  redis.call('ZADD', KEYS[3], now, id)
  local body = redis.call('HGET', KEYS[2], id)
  local count = redis.call('HGET', KEYS[4], id)
  if body then
    out[#out + 1] = id
    out[#out + 1] = body
    out[#out + 1] = count or '0'
    if notice ~= '' then redis.call('PUBLISH', notice, id) end
  else
    redis.call('ZREM', KEYS[3], id)
  end
end
return out
"""
)

# Ownership test shared by finish/cancel/stall/touch: the job must still be
# claimed and, when we know the score we wrote, with that score (§15.3: after a
# lease expiry someone else may hold it now).
_OWNED = """
local function owned(key, id, score)
  local s = redis.call('ZSCORE', key, id)
  if not s then return 0 end
  if score ~= '' and tonumber(s) ~= tonumber(score) then return -1 end
  return 1
end
"""

# KEYS: claimed, cancelled, published, finishes, items, errors
# ARGV: result channel, then per job: id, score, has_result ('1'/'0'), result
# Returns one status per job: 1 finished, 0 not claimed, -1 claimed by another.
FINISH = (
    _OWNED
    + """
local out = {}
local channel = ARGV[1]
for i = 2, #ARGV, 4 do
  local id = ARGV[i]
  local st = owned(KEYS[1], id, ARGV[i + 1])
  if st == 1 then
    -- §8.3, in thoonk.py's order; the notice is inside the atomic unit.
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZREM', KEYS[3], id)
    redis.call('INCR', KEYS[4])
    if ARGV[i + 2] == '1' then
      redis.call('PUBLISH', channel, id .. '\\0' .. ARGV[i + 3])
    end
    redis.call('HDEL', KEYS[5], id)
    redis.call('HDEL', KEYS[6], id)
  end
  out[#out + 1] = st
end
return out
"""
)

# KEYS: claimed, cancelled, ids, errors, stats
# ARGV: stats field ('' = none), then per job: id, score, error ('' = none)
CANCEL = (
    _OWNED
    + """
local out = {}
local field = ARGV[1]
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  local st = owned(KEYS[1], id, ARGV[i + 1])
  if st == 1 then
    -- §8.4: back of the line, attempt count + 1.
    redis.call('HINCRBY', KEYS[2], id, 1)
    redis.call('LPUSH', KEYS[3], id)
    redis.call('ZREM', KEYS[1], id)
    if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[4], id, ARGV[i + 2]) end
    if field ~= '' then redis.call('HINCRBY', KEYS[5], field, 1) end
  end
  out[#out + 1] = st
end
return out
"""
)

# KEYS: claimed, cancelled, stalled, published, errors, stats
# ARGV: stats field ('' = none), then per job: id, score, error ('' = none)
STALL = (
    _OWNED
    + """
local out = {}
local field = ARGV[1]
for i = 2, #ARGV, 3 do
  local id = ARGV[i]
  local st = owned(KEYS[1], id, ARGV[i + 1])
  if st == 1 then
    -- §8.5: parked until someone retries it (our dead-letter set).
    redis.call('ZREM', KEYS[1], id)
    redis.call('HDEL', KEYS[2], id)
    redis.call('SADD', KEYS[3], id)
    redis.call('ZREM', KEYS[4], id)
    if ARGV[i + 2] ~= '' then redis.call('HSET', KEYS[5], id, ARGV[i + 2]) end
    if field ~= '' then redis.call('HINCRBY', KEYS[6], field, 1) end
  end
  out[#out + 1] = st
end
return out
"""
)

# KEYS: stalled, ids, published
# ARGV: ids.  Unlike thoonk.py (§8.6, §15.7) only a stalled job is retried, and
# the published score is in milliseconds like every other writer's.
RETRY = (
    _NOW
    + """
local out = {}
for i = 1, #ARGV do
  local id = ARGV[i]
  if redis.call('SREM', KEYS[1], id) == 1 then
    redis.call('LPUSH', KEYS[2], id)
    redis.call('ZADD', KEYS[3], now, id)
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
)

# KEYS: claimed, cancelled, ids, stats
# ARGV: lease in ms, max jobs
# Claims older than the lease are given back exactly like a §8.4 cancel, so old
# clients see an ordinary cancel (§15.2).  Returns the ids given back.
REAP = (
    _NOW
    + """
local cutoff = tonumber(now) - tonumber(ARGV[1])
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', cutoff,
                       'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('HINCRBY', KEYS[2], id, 1)
  redis.call('LPUSH', KEYS[3], id)
  redis.call('ZREM', KEYS[1], id)
end
if #ids > 0 then redis.call('HINCRBY', KEYS[4], 'reaped', #ids) end
return ids
"""
)

# KEYS: claimed
# ARGV: per job: id, score.  Extends the lease of jobs we still own (§15.2,
# ``ZADD XX``).  Returns {now, status per job}.
TOUCH = (
    _NOW
    + _OWNED
    + """
local out = {now}
for i = 1, #ARGV, 2 do
  local st = owned(KEYS[1], ARGV[i], ARGV[i + 1])
  if st == 1 then redis.call('ZADD', KEYS[1], 'XX', now, ARGV[i]) end
  out[#out + 1] = st
end
return out
"""
)
