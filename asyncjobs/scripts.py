"""Lua scripts: each turns several arq round trips into one atomic call."""

from __future__ import annotations

# KEYS: job, result, in-progress, queue zset, recent index
# ARGV: job id, payload, score (ms), job key ttl (ms), wake channel, now (ms), recent cap
# -> 1 enqueued, 0 a job with this id exists (queued, running or with a kept result)
ENQUEUE = """
if redis.call('EXISTS', KEYS[1], KEYS[2], KEYS[3]) > 0 then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[3], ARGV[1])
redis.call('ZADD', KEYS[5], ARGV[6], ARGV[1])
local cap = tonumber(ARGV[7])
if redis.call('ZCARD', KEYS[5]) > cap + 1000 then
  redis.call('ZREMRANGEBYRANK', KEYS[5], 0, -cap - 1)
end
redis.call('PUBLISH', ARGV[5], ARGV[3])
return 1
"""

# Claim up to ARGV[3] due jobs across the queues in KEYS (priority order).
# A claimed job gets an in-progress lease and is re-scored to the lease expiry, so it leaves
# every worker's due range while it runs and becomes due again if the lease lapses.
# ARGV: now (ms), lease (ms), limit, in-progress key prefix, scan limit per queue
# -> {claimed: {queue index, job id, original score, ...}, earliest score in any queue or false}
CLAIM = """
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local prefix = ARGV[4]
local scan = tonumber(ARGV[5])
local out = {}
local n = 0
for qi, q in ipairs(KEYS) do
  if n >= limit then break end
  local due = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'WITHSCORES', 'LIMIT', 0, scan)
  for i = 1, #due, 2 do
    if n >= limit then break end
    local id = due[i]
    if redis.call('SET', prefix .. id, '1', 'NX', 'PX', lease) then
      redis.call('ZADD', q, 'XX', now + lease, id)
      out[#out + 1] = qi
      out[#out + 1] = id
      out[#out + 1] = due[i + 1]
      n = n + 1
    end
  end
end
local earliest = false
for _, q in ipairs(KEYS) do
  local first = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
  if first[2] and (not earliest or tonumber(first[2]) < earliest) then earliest = tonumber(first[2]) end
end
return {out, earliest and tostring(earliest) or false}
"""

# Renew the leases of running jobs. KEYS: in-progress keys; ARGV[1]: lease (ms), ARGV[2]: now (ms),
# then for each key its queue zset and job id. A job whose marker is gone (finished) is skipped.
RENEW = """
local lease = tonumber(ARGV[1])
local now = tonumber(ARGV[2])
for i, k in ipairs(KEYS) do
  if redis.call('PEXPIRE', k, lease) == 1 then
    redis.call('ZADD', ARGV[1 + 2 * i], 'XX', now + lease, ARGV[2 + 2 * i])
  end
end
return #KEYS
"""

# Abort a job that has not started: remove it and write its (aborted) result atomically.
# KEYS: queue zset, job, in-progress, result, events channel name is ARGV[3]
# ARGV: job id, result payload, events channel, event json, result ttl (ms, 0 = keep)
# -> 'aborted' | 'running' | 'missing'
ABORT_QUEUED = """
if redis.call('EXISTS', KEYS[3]) == 1 then return 'running' end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 'missing' end
redis.call('DEL', KEYS[2])
if tonumber(ARGV[5]) > 0 then
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[5])
else
  redis.call('SET', KEYS[4], ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 'aborted'
"""
