"""Lua scripts: each turns several arq round trips into one atomic call."""

from __future__ import annotations

import json
from string import Template

from asyncjobs import keys


def _with_constants(source: str, **constants: str | int) -> str:
    """``source`` with each ``$NAME`` replaced by a Lua literal of ``constants[NAME]``."""
    return Template(source).substitute({k: v if isinstance(v, int) else json.dumps(v) for k, v in constants.items()})


# KEYS: queue zset. ARGV: job id, payload, score (ms), job key ttl (ms), wake channel
# -> 1 enqueued, 0 a job with this id exists (queued, running or with a kept result)
# The job's own keys are built here from the id (constant prefixes from :mod:`asyncjobs.keys`
# are written into the script), so a call sends the id once: a smaller command to pack and send.
# A reused id starts clean: a stale abort request or try counter of an earlier job is dropped.
ENQUEUE = _with_constants(
    """
local id = ARGV[1]
local job = $JOB .. id
if redis.call('EXISTS', job, $RESULT .. id, $IN_PROGRESS .. id) > 0 then return 0 end
redis.call('ZREM', $ARQ_ABORT, id)
redis.call('DEL', $RETRY .. id)
redis.call('SET', job, ARGV[2], 'PX', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], id)
redis.call('PUBLISH', ARGV[5], ARGV[3])
return 1
""",
    JOB=keys.job(""),
    RESULT=keys.result(""),
    IN_PROGRESS=keys.in_progress(""),
    RETRY=keys.retry(""),
    ARQ_ABORT=keys.ARQ_ABORT,
)

# Lua that adds jobs to the recent-jobs index (the dashboard's history of started and ended
# jobs; waiting jobs are listed from the queues themselves, so enqueue writes no index entry).
# Scores are Redis' clock in microseconds, kept above the newest entry, plus the job's place in
# this call: exact newest-first order. '%.0f' keeps every digit (Lua prints %.14g).
_INDEX = """
local function index_base()
  local t = redis.call('TIME')
  local base = t[1] * 1000000 + t[2]
  local top = redis.call('ZRANGE', $RECENT, -1, -1, 'WITHSCORES')[2]
  if top and tonumber(top) >= base then base = tonumber(top) + 1 end
  return base
end
local function index_job(id, base, n)
  redis.call('ZADD', $RECENT, string.format('%.0f', base + n), id)
end
local function trim_index()
  if redis.call('ZCARD', $RECENT) > $RECENT_MAX + 1000 then
    redis.call('ZREMRANGEBYRANK', $RECENT, 0, -$RECENT_MAX - 1)
  end
end
"""

# Lua that puts jobs whose lease lapsed (their worker died) back at the score they were
# claimed at, so they keep their place and priority instead of queueing behind every job that
# became due while they were leased. A lease entry that is due but whose in-progress marker
# still exists is looked at again when the marker expires (a plain arq worker took the job
# after the lapse); one whose job left the queue or was re-scored by someone else is dropped.
_RESTORE_LAPSED = """
local function restore_lapsed(q, now, p_ip, p_state)
  local lk = $LEASES .. q
  local due = redis.call('ZRANGEBYSCORE', lk, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
  for i = 1, #due, 2 do
    local id, expiry = due[i], tonumber(due[i + 1])
    local ttl = redis.call('PTTL', p_ip .. id)
    if ttl > 0 then
      redis.call('ZADD', lk, now + ttl, id)
    else
      if ttl == -2 and tonumber(redis.call('ZSCORE', q, id)) == expiry then
        local origin = redis.call('HGET', p_state .. id, 'queue_score')
        if origin then redis.call('ZADD', q, 'XX', origin, id) end
      end
      redis.call('ZREM', lk, id)
    end
  end
end
"""

# Claim up to ARGV[3] due jobs across the queues in KEYS (priority order), and start them.
# A claimed job gets an in-progress lease (valued with the owner's id, so only the owner
# renews it) and is re-scored to the lease expiry, so it leaves every worker's due range while
# it runs and becomes due again if the lease lapses; the score it was claimed at is kept in
# its state hash and a lease entry is added, so a lapsed lease is put back in its place
# (``_RESTORE_LAPSED``) before due jobs are read. Starting does what arq's run_job does first
# (read the job, count the try, take an abort request) and what the runtime does at start
# (state hash, ``started`` event), so a job costs no extra round trip before its function runs.
# The marker expires 1 ms before the re-scored job is due: a worker that wakes when it is due
# finds the marker gone.
# ARGV: now (ms), lease (ms), limit, scan limit per queue, worker label, state ttl (s),
#       then key prefixes: in-progress, job, retry, state, events; then the arq abort zset,
#       then the owner id
# -> {claimed: {queue index, job id, original score, payload or false, try, aborted 0/1, ...},
#     earliest score in any queue or false}
CLAIM = _with_constants(
    _INDEX
    + _RESTORE_LAPSED
    + """
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local scan = tonumber(ARGV[4])
local p_ip, p_job, p_retry, p_state, p_events = ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]
local owner = ARGV[13]
local out = {}
local n = 0
local base = false
for qi, q in ipairs(KEYS) do
  if n >= limit then break end
  restore_lapsed(q, now, p_ip, p_state)
  local due = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'WITHSCORES', 'LIMIT', 0, scan)
  for i = 1, #due, 2 do
    if n >= limit then break end
    local id = due[i]
    if redis.call('SET', p_ip .. id, owner, 'NX', 'PXAT', now + lease - 1) then
      local lk = $LEASES .. q
      local origin = due[i + 1]
      if redis.call('ZSCORE', lk, id) then  -- a lapsed lease not yet put back
        origin = redis.call('HGET', p_state .. id, 'queue_score') or origin
      end
      redis.call('ZADD', q, 'XX', now + lease, id)
      redis.call('ZADD', lk, now + lease, id)
      local payload = redis.call('GET', p_job .. id)
      local try = redis.call('INCR', p_retry .. id)
      redis.call('EXPIRE', p_retry .. id, 88400)
      local aborted = redis.call('ZREM', ARGV[12], id)
      local fn = ''
      if payload then
        local ok, d = pcall(function() return cmsgpack.unpack(payload) end)  -- fakeredis has no cmsgpack
        if ok and type(d) == 'table' and type(d['f']) == 'string' then fn = d['f'] end
      end
      local sk = p_state .. id
      redis.call('HSET', sk, 'started_ms', now, 'try', try, 'worker', ARGV[5], 'function', fn, 'queue_score', origin)
      redis.call('EXPIRE', sk, ARGV[6])
      redis.call('PUBLISH', p_events .. id, cjson.encode({job_id = id, event = 'started', ts = now,
        started_ms = now, ['try'] = try, worker = ARGV[5], ['function'] = fn}))
      base = base or index_base()
      index_job(id, base, n)
      n = n + 1
      out[#out + 1] = qi
      out[#out + 1] = id
      out[#out + 1] = origin
      out[#out + 1] = payload
      out[#out + 1] = try
      out[#out + 1] = aborted
    end
  end
end
local earliest = false
for _, q in ipairs(KEYS) do
  local first = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
  if first[2] and (not earliest or tonumber(first[2]) < earliest) then earliest = tonumber(first[2]) end
end
if n > 0 then trim_index() end
return {out, earliest and tostring(earliest) or false}
""",
    RECENT=keys.RECENT,
    RECENT_MAX=keys.RECENT_MAX,
    LEASES=keys.leases(""),
)

# Finish a batch of jobs in one call (what arq's finish_job does, per job, plus the terminal
# event once the result is stored, the outcome counts, and one message on the done channel
# naming the jobs that ended). KEYS[1]: the arq abort zset.
# ARGV: key prefixes in-progress, job, retry, result, events; m, then m count targets (stats
#   hash, outcome); then 9 fields per job:
#   id, queue zset, keep in-progress ms ('' = delete), 'f' finish | 'r' retry,
#   result payload ('' = none), result ttl ms ('0' = forever), retry score, event ('' = none),
#   count target index ('' = none)
# A job is counted only if this call removed it from its queue, so a call sent again after a
# lost reply (the client reconnects and retries) counts nothing twice.
FINISH = _with_constants(
    """
local p_ip, p_job, p_retry, p_result, p_events = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local ended, tally = {}, {}
local m = tonumber(ARGV[6])
local first = 7 + 2 * m
for i = first, #ARGV, 9 do
  local id, q, keep, mode = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  -- a kept marker is no longer the owner's: a renewal racing with this call leaves it alone
  if keep == '' then redis.call('DEL', p_ip .. id) else redis.call('SET', p_ip .. id, '1', 'XX', 'PX', keep) end
  redis.call('ZREM', $LEASES .. q, id)
  if mode == 'f' then
    local res, px = ARGV[i + 4], ARGV[i + 5]
    if res ~= '' then
      if px == '0' then redis.call('SET', p_result .. id, res) else redis.call('SET', p_result .. id, res, 'PX', px) end
    end
    redis.call('DEL', p_retry .. id, p_job .. id)
    redis.call('ZREM', KEYS[1], id)
    local removed = redis.call('ZREM', q, id)
    local c = ARGV[i + 8]
    if c ~= '' and removed == 1 then tally[c] = (tally[c] or 0) + 1 end
    if ARGV[i + 7] ~= '' then
      redis.call('PUBLISH', p_events .. id, ARGV[i + 7])
      ended[#ended + 1] = id
    end
  else
    redis.call('ZADD', q, 'XX', ARGV[i + 6], id)
  end
end
for c, n in pairs(tally) do
  local at = 5 + 2 * tonumber(c)
  redis.call('HINCRBY', ARGV[at], ARGV[at + 1], n)
end
if #ended > 0 then redis.call('PUBLISH', $DONE, cjson.encode(ended)) end
return (#ARGV - first + 1) / 9
""",
    DONE=keys.DONE_CHANNEL,
    LEASES=keys.leases(""),
)

# Renew the leases of running jobs (one call per tick for all of a worker's running jobs).
# KEYS: in-progress keys; ARGV[1]: new lease expiry (epoch ms), ARGV[2]: the owner id, then for
# each key its queue zset and job id. Only a marker that still exists and holds the owner's id
# is extended: a renewal that races with the job's finish (marker deleted or handed over) or
# with another worker's claim after a lapse never resurrects or steals it. -> jobs renewed
RENEW = _with_constants(
    """
local at = tonumber(ARGV[1])
local n = 0
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[2] then
    local q, id = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
    redis.call('PEXPIREAT', k, at - 1)
    redis.call('ZADD', q, 'XX', at, id)
    redis.call('ZADD', $LEASES .. q, 'XX', at, id)
    n = n + 1
  end
end
return n
""",
    LEASES=keys.leases(""),
)

# Abort a job that has not started: remove it and write its (aborted) result atomically.
# KEYS: queue zset, job, in-progress, result, the queue's stats hash
# ARGV: job id, result payload, events channel, event json, result ttl (ms, 0 = keep)
# -> 'aborted' | 'running' | 'missing'
ABORT_QUEUED = _with_constants(
    _INDEX
    + """
if redis.call('EXISTS', KEYS[3]) == 1 then return 'running' end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 'missing' end
redis.call('DEL', KEYS[2])
index_job(ARGV[1], index_base(), 0)
trim_index()
redis.call('HINCRBY', KEYS[5], 'aborted', 1)
if tonumber(ARGV[5]) > 0 then
  redis.call('SET', KEYS[4], ARGV[2], 'PX', ARGV[5])
else
  redis.call('SET', KEYS[4], ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
redis.call('PUBLISH', $DONE, cjson.encode({ARGV[1]}))
return 'aborted'
""",
    DONE=keys.DONE_CHANNEL,
    RECENT=keys.RECENT,
    RECENT_MAX=keys.RECENT_MAX,
)

# Index one job that a plain arq worker started (the engine's CLAIM indexes its own). ARGV: id
INDEX_ONE = _with_constants(
    _INDEX + "index_job(ARGV[1], index_base(), 0)\ntrim_index()\nreturn 1\n",
    RECENT=keys.RECENT,
    RECENT_MAX=keys.RECENT_MAX,
)

# TEMPORARY (until the one end-of-job script lands): the workflow fan-in in FINISH and ABORT_QUEUED
from asyncjobs.workflow_scripts import LUA_ON_END  # noqa: E402

_TALLY = "if c ~= '' and removed == 1 then tally[c] = (tally[c] or 0) + 1 end"
FINISH = LUA_ON_END + FINISH.replace(
    _TALLY, _TALLY + "\n    if c ~= '' and removed == 1 then workflow_on_end(id, q, ARGV[6 + 2 * tonumber(c)]) end"
)
_ZREM = "if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 'missing' end"
ABORT_QUEUED = LUA_ON_END + ABORT_QUEUED.replace(_ZREM, _ZREM + "\nworkflow_on_end(ARGV[1], KEYS[1], 'aborted')")
