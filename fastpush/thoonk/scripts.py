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
# Returns {now, id1, body1, count1, id2, ...}.  Per job these are thoonk.py's
# claim reads and writes (§8.2), done with one command per kind for the whole
# batch (RPOP with a count, one ZADD, one HMGET): a script is atomic, so only
# the number of commands Redis runs changes, not what anyone can observe.
# Ids whose body is gone (retracted under an old client's feet) are dropped
# and their claim cleared (§14 "tolerate what old clients leave behind").
CLAIM = (
    _NOW
    + """
local n = tonumber(ARGV[1])
local notice = ARGV[2]
local out = {now}
local ids = redis.pcall('RPOP', KEYS[1], n)
if type(ids) == 'table' and ids.err then  -- Redis < 6.2: no count
  ids = {}
  for i = 1, n do
    local id = redis.call('RPOP', KEYS[1])
    if not id then break end
    ids[i] = id
  end
elseif not ids then
  return out
end
if #ids == 0 then return out end
local zargs = {}
for i, id in ipairs(ids) do
  zargs[2 * i - 1] = now
  zargs[2 * i] = id
end
redis.call('ZADD', KEYS[3], unpack(zargs))
local bodies = redis.call('HMGET', KEYS[2], unpack(ids))
local counts = nil
if redis.call('EXISTS', KEYS[4]) == 1 then
  counts = redis.call('HMGET', KEYS[4], unpack(ids))
end
local gone = {}
for i, id in ipairs(ids) do
  local body = bodies[i]
  if body then
    out[#out + 1] = id
    out[#out + 1] = body
    out[#out + 1] = (counts and counts[i]) or '0'
    if notice ~= '' then redis.call('PUBLISH', notice, id) end
  else
    gone[#gone + 1] = id
  end
end
if #gone > 0 then redis.call('ZREM', KEYS[3], unpack(gone)) end
return out
"""
)

# KEYS: ids, publishes, items, published
# ARGV: push command ('LPUSH' or 'RPUSH'), now_ms, then per job: id, body
# thoonk.py's put transaction (§8.1) for many jobs at once; the put notice
# ``feed.publishes:<q>`` goes out inside the same atomic unit (§15.9).
PUT = """
local push = ARGV[1]
local now = ARGV[2]
for i = 3, #ARGV, 2 do
  local id = ARGV[i]
  redis.call(push, KEYS[1], id)
  redis.call('INCR', KEYS[2])
  redis.call('HSET', KEYS[3], id, ARGV[i + 1])
  redis.call('ZADD', KEYS[4], now, id)
  redis.call('PUBLISH', KEYS[2], id .. '\\0' .. ARGV[i + 1])
end
return (#ARGV - 2) / 2
"""

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
# ARGV: result channel, then one blob of records ``id NUL score NUL R NUL``
# where R is '0' (no result) or '1' followed by the result.  One blob instead
# of four arguments per job: packing arguments is most of the client's cost
# of a finish, and Lua splits a string on NUL cheaply.  (Ids never contain
# NUL in Thoonk; results must not either, since the notice is NUL-framed.)
# The writes are §8.3's for every job that is still ours, one command per
# kind for the batch (ZMSCORE, ZREM, HDEL, INCRBY n), and one PUBLISH per
# result, all inside the atomic unit.
# Returns one status per job: 1 finished, 0 not claimed, -1 claimed by another.
FINISH = """
local claimed = KEYS[1]
local channel = ARGV[1]
local blob = ARGV[2]
local ids, scores, results = {}, {}, {}
local pos, len = 1, #blob
while pos <= len do
  local a = string.find(blob, '\\0', pos, true)
  local b = string.find(blob, '\\0', a + 1, true)
  local c = string.find(blob, '\\0', b + 1, true)
  ids[#ids + 1] = string.sub(blob, pos, a - 1)
  scores[#ids] = string.sub(blob, a + 1, b - 1)
  -- '1' (byte 49): a result follows; '0': finish without a notice.
  results[#ids] = string.byte(blob, b + 1) == 49 and string.sub(blob, b + 2, c - 1)
  pos = c + 1
end
local out = {}
if #ids == 0 then return out end
local cur = redis.pcall('ZMSCORE', claimed, unpack(ids))
if type(cur) == 'table' and cur.err then  -- Redis < 6.2
  cur = {}
  for i, id in ipairs(ids) do cur[i] = redis.call('ZSCORE', claimed, id) end
end
local mine, seen = {}, {}
for i, id in ipairs(ids) do
  local s = cur[i]
  if not s or seen[id] then
    out[i] = 0
  elseif scores[i] ~= '' and tonumber(s) ~= tonumber(scores[i]) then
    out[i] = -1  -- the lease ran out and someone else holds it now
  else
    out[i] = 1
    seen[id] = true
    mine[#mine + 1] = i
  end
end
if #mine == 0 then return out end
local mids = {}
for k, i in ipairs(mine) do mids[k] = ids[i] end
redis.call('ZREM', claimed, unpack(mids))
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('HDEL', KEYS[2], unpack(mids)) end
redis.call('ZREM', KEYS[3], unpack(mids))
redis.call('INCRBY', KEYS[4], #mids)
for _, i in ipairs(mine) do
  if results[i] then redis.call('PUBLISH', channel, ids[i] .. '\\0' .. results[i]) end
end
redis.call('HDEL', KEYS[5], unpack(mids))
if redis.call('EXISTS', KEYS[6]) == 1 then redis.call('HDEL', KEYS[6], unpack(mids)) end
return out
"""

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
