"""Lua scripts: each turns several arq round trips into one atomic call.

The scripts that start or end a job are composed from the snippets of
:mod:`asyncjobs.lifecycle` (index, start, end, and the release/on_end hooks): :func:`build`
composes them with given hooks, and the module's constants are built with the lifecycle's."""

from __future__ import annotations

from asyncjobs import keys, lifecycle, limits
from asyncjobs.lua import script as _script
from asyncjobs.lua import tagged
from asyncjobs.lua import with_constants as _with_constants

# A job key is written with its TTL, or without one when the TTL is '0' (the default: a queued
# job waits for a worker however long that takes; ``job_expiry`` sets one).
_SET_JOB = """local function set_job(k, v, ttl)
  if ttl == '0' then redis.call('SET', k, v) else redis.call('SET', k, v, 'PX', ttl) end
end
"""


# KEYS: queue zset. ARGV: job id, payload, score (ms), job key ttl (ms; 0: no expiry), wake channel
# -> 1 enqueued, 0 a job with this id exists (queued, running or with a kept result)
# The job's own keys are built here from the id (constant prefixes from :mod:`asyncjobs.keys`
# are written into the script), so a call sends the id once: a smaller command to pack and send.
# A reused id starts clean: a stale abort request or try counter of an earlier job is dropped.
ENQUEUE = _script(
    _with_constants(
        _SET_JOB
        + """
local id = ARGV[1]
local job = $JOB .. id
if redis.call('EXISTS', job, $RESULT .. id, $IN_PROGRESS .. id) > 0 then return 0 end
redis.call('ZREM', $ARQ_ABORT, id)
redis.call('DEL', $RETRY .. id)
set_job(job, ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], id)
redis.call('PUBLISH', ARGV[5], ARGV[3])
return 1
""",
        JOB=keys.job(""),
        RESULT=keys.result(""),
        IN_PROGRESS=keys.in_progress(""),
        RETRY=keys.retry(""),
        ARQ_ABORT=tagged(keys.ARQ_ABORT),
    )
)

# ENQUEUE with a flow-control window (:mod:`asyncjobs.flow`), decided in the same call.
# KEYS: queue zset, the window's key. ARGV: as ENQUEUE, then mode ('d' dedupe, 'b' debounce,
# 't' throttle) and how long the window's key is held (ms).
# -> {1 created | 0 id taken | 2 deduplicated | 3 debounced | 4 throttled, the job's id}: for 2-4
# the id of the job holding the window. A debounced job is replaced only while it waits in this
# queue and has not started (no in-progress marker, no try counted, no result): payload and
# score are rewritten, its id kept; a job that started leaves the window to a new job.
ENQUEUE_FLOW = _script(
    _with_constants(
        _SET_JOB
        + """
local id, mode = ARGV[1], ARGV[6]
local holder = redis.call('GET', KEYS[2])
if holder then
  if mode == 'd' then return {2, holder} end
  if mode == 't' then return {4, holder} end
  if redis.call('EXISTS', $IN_PROGRESS .. holder, $RETRY .. holder, $RESULT .. holder) == 0
      and redis.call('ZSCORE', KEYS[1], holder) and redis.call('EXISTS', $JOB .. holder) == 1 then
    set_job($JOB .. holder, ARGV[2], ARGV[4])
    redis.call('ZADD', KEYS[1], 'XX', ARGV[3], holder)
    redis.call('SET', KEYS[2], holder, 'PX', ARGV[7])
    redis.call('PUBLISH', ARGV[5], ARGV[3])
    return {3, holder}
  end
end
local job = $JOB .. id
if redis.call('EXISTS', job, $RESULT .. id, $IN_PROGRESS .. id) > 0 then return {0, id} end
redis.call('ZREM', $ARQ_ABORT, id)
redis.call('DEL', $RETRY .. id)
set_job(job, ARGV[2], ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[3], id)
redis.call('SET', KEYS[2], id, 'PX', ARGV[7])
redis.call('PUBLISH', ARGV[5], ARGV[3])
return {1, id}
""",
        JOB=keys.job(""),
        RESULT=keys.result(""),
        IN_PROGRESS=keys.in_progress(""),
        RETRY=keys.retry(""),
        ARQ_ABORT=tagged(keys.ARQ_ABORT),
    )
)

# Lua that puts jobs whose lease lapsed (their worker died) back at the score they were
# claimed at, so they keep their place and priority instead of queueing behind every job that
# became due while they were leased. A lease entry that is due but whose in-progress marker
# still exists is looked at again when the marker expires (a plain arq worker took the job
# after the lapse); one whose job left the queue or was re-scored by someone else is dropped.
# A lapsed lease releases what the claim took (the hook is idempotent: an end already did).
_RESTORE_LAPSED = """
local function restore_lapsed(q, now)
  local lk = $LEASES .. q
  local due = redis.call('ZRANGEBYSCORE', lk, '-inf', now, 'WITHSCORES', 'LIMIT', 0, 1000)
  for i = 1, #due, 2 do
    local id, expiry = due[i], tonumber(due[i + 1])
    local ttl = redis.call('PTTL', $IN_PROGRESS .. id)
    if ttl > 0 then
      redis.call('ZADD', lk, now + ttl, id)
    else
      if ttl == -2 and tonumber(redis.call('ZSCORE', q, id)) == expiry then
        local origin = redis.call('HGET', $STATE .. id, 'queue_score')
        if origin then redis.call('ZADD', q, 'XX', origin, id) end
      end
      redis.call('ZREM', lk, id)
      release(id, q)
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
# (state hash, ``started`` event: ``lifecycle.LUA_STARTED``), so a job costs no extra round
# trip before its function runs. The marker expires 1 ms before the re-scored job is due: a
# worker that wakes when it is due finds the marker gone.
# Flow control (:mod:`asyncjobs.limits`): a paused queue is not read; a job of a paused or
# limited function that may not start now is parked or scheduled for its next token instead
# (its marker dropped), which counts as progress: the worker claims again at once.
# ARGV: now (ms), lease (ms), limit, scan limit per queue, worker id (the lease's owner),
#   limits table (JSON, '' for none: limits.limits_table)
# -> {claimed: {queue index, job id, original score, payload or false, try, aborted 0/1, ...},
#     earliest score in any queue or false, jobs set aside by flow control}
_CLAIM = """
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
local scan = tonumber(ARGV[4])
local owner = ARGV[5]
local lim = {}
if ARGV[6] and ARGV[6] ~= '' then lim = cjson.decode(ARGV[6]) end
local paused = {}
local pf = redis.call('HGETALL', $PAUSED)
for i = 1, #pf, 2 do paused[pf[i]] = true end
local gating = next(lim) ~= nil or #pf > 0
local out = {}
local n, moved = 0, 0
local base = false
for qi, q in ipairs(KEYS) do
  if n >= limit then break end
  restore_lapsed(q, now)
  local due = {}
  if not paused['q:' .. q] then
    due = redis.call('ZRANGEBYSCORE', q, '-inf', now, 'WITHSCORES', 'LIMIT', 0, scan)
  end
  for i = 1, #due, 2 do
    if n >= limit then break end
    local id = due[i]
    if redis.call('SET', $IN_PROGRESS .. id, owner, 'NX', 'PXAT', now + lease - 1) then
      local lk = $LEASES .. q
      local origin = due[i + 1]
      local lapsed = redis.call('ZSCORE', lk, id)
      if lapsed then  -- a lapsed lease not yet put back
        origin = redis.call('HGET', $STATE .. id, 'queue_score') or origin
        release(id, q)
      end
      local payload = redis.call('GET', $JOB .. id)
      local fn, d = '', nil
      if payload then
        local ok, v = pcall(function() return cmsgpack.unpack(payload) end)  -- fakeredis has no cmsgpack
        if ok and type(v) == 'table' and type(v['f']) == 'string' then fn, d = v['f'], v end
      end
      if gating and fn ~= '' and not lim_gate(id, q, origin, fn, lim[fn], d, now, lease, paused) then
        redis.call('DEL', $IN_PROGRESS .. id)
        if lapsed then redis.call('ZREM', lk, id) end
        moved = moved + 1
      else
        redis.call('ZADD', q, 'XX', now + lease, id)
        redis.call('ZADD', lk, now + lease, id)
        local try = redis.call('INCR', $RETRY .. id)
        redis.call('EXPIRE', $RETRY .. id, 88400)
        local aborted = redis.call('ZREM', $ARQ_ABORT, id)
        job_started(id, {started_ms = now, ['try'] = try, worker = owner, ['function'] = fn}, origin)
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
end
local earliest = false
for _, q in ipairs(KEYS) do
  if not paused['q:' .. q] then
    local first = redis.call('ZRANGE', q, 0, 0, 'WITHSCORES')
    if first[2] and (not earliest or tonumber(first[2]) < earliest) then earliest = tonumber(first[2]) end
  end
end
if n > 0 then trim_index() end
return {out, earliest and tostring(earliest) or false, moved}
"""

# Finish a batch of jobs in one call: what arq's finish_job does, per job, then the job's end
# through the lifecycle's end snippet (event, count, done message, dead letter, hooks) once
# the result is stored. KEYS: none.
# ARGV: m, then m count targets (stats hash, outcome); then 10 fields per job:
#   id, queue zset, keep in-progress ms ('' = delete), 'f' finish | 'r' retry,
#   result payload ('' = none), result ttl ms ('0' = forever), retry score, event ('' = none),
#   count target index ('' = no outcome: arq's cleanup only), dead-letter entry ('' = none)
# A job ended only if this call removed it from its queue, so a call sent again after a lost
# reply (the client reconnects and retries) counts and announces nothing twice.
_FINISH = """
local m = tonumber(ARGV[1])
local first = 2 + 2 * m
for i = first, #ARGV, 10 do
  local id, q, keep, mode = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  -- a kept marker is no longer the owner's: a renewal racing with this call leaves it alone
  local ip = $IN_PROGRESS .. id
  if keep == '' then redis.call('DEL', ip) else redis.call('SET', ip, '1', 'XX', 'PX', keep) end
  redis.call('ZREM', $LEASES .. q, id)
  if mode == 'f' then
    local res, px = ARGV[i + 4], ARGV[i + 5]
    if res ~= '' then
      if px == '0' then redis.call('SET', $RESULT .. id, res) else redis.call('SET', $RESULT .. id, res, 'PX', px) end
    end
    redis.call('DEL', $RETRY .. id, $JOB .. id)
    redis.call('ZREM', $ARQ_ABORT, id)
    local fresh = redis.call('ZREM', q, id) == 1
    local c = ARGV[i + 8]
    if c == '' then
      release(id, q)
    else
      local at = 2 * tonumber(c)
      job_ended(id, q, ARGV[at], ARGV[at + 1], ARGV[i + 7], ARGV[i + 9], fresh, false)
    end
  else
    redis.call('ZADD', q, 'XX', ARGV[i + 6], id)
    job_requeued(id, q, ARGV[i + 7])
  end
end
end_flush()
return (#ARGV - first + 1) / 10
"""

# Abort a job that has not started: remove it and write its (aborted) result atomically, then
# end it through the end snippet (indexed: it never started, so it has no index entry yet).
# KEYS: none. ARGV: job id, queue zset, stats hash, result payload, result ttl (ms, 0 = keep),
# event json -> 'aborted' | 'running' | 'missing'
_ABORT_QUEUED = """
local id, q = ARGV[1], ARGV[2]
if redis.call('EXISTS', $IN_PROGRESS .. id) == 1 then return 'running' end
if redis.call('ZREM', q, id) == 0 then return 'missing' end
redis.call('DEL', $JOB .. id)
if tonumber(ARGV[5]) > 0 then
  redis.call('SET', $RESULT .. id, ARGV[4], 'PX', ARGV[5])
else
  redis.call('SET', $RESULT .. id, ARGV[4])
end
job_ended(id, q, ARGV[3], 'aborted', ARGV[6], '', true, true)
end_flush()
return 'aborted'
"""

# The end of a job a plain arq worker ran: arq has stored its result and deleted its keys, so
# this call writes the rest of the end (``lifecycle.plain_end_args``). KEYS: none.
# ARGV: job id, queue zset, outcome ('' = re-queued: release, and publish the event if any),
#   event, stats hash, dead-letter entry, the run's start (ms; '' = unknown)
# A run is ended once: its start is marked ``ended`` in its state hash, so a call sent again
# writes nothing twice. -> 1 if this call ended the job
_END_PLAIN = """
local id, q, outcome, event = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if outcome == '' then
  job_requeued(id, q, event)
  return 0
end
local fresh = true
if ARGV[7] ~= '' then
  local sk = $STATE .. id
  if redis.call('HGET', sk, 'ended') == ARGV[7] then
    fresh = false
  else
    redis.call('HSET', sk, 'ended', ARGV[7])
    if redis.call('TTL', sk) < 0 then redis.call('EXPIRE', sk, $STATE_TTL) end
  end
end
job_ended(id, q, ARGV[5], outcome, event, ARGV[6], fresh, false)
end_flush()
return fresh and 1 or 0
"""


def build(hooks: str = lifecycle.HOOKS) -> dict[str, str]:
    """The scripts that start or end a job (``CLAIM``, ``FINISH``, ``ABORT_QUEUED``,
    ``END_PLAIN``), composed with the Lua ``hooks`` (defining ``release`` and ``on_end``)."""
    constants: dict[str, str | int] = {
        "IN_PROGRESS": keys.in_progress(""),
        "JOB": keys.job(""),
        "RETRY": keys.retry(""),
        "RESULT": keys.result(""),
        "STATE": keys.state(""),
        "STATE_TTL": keys.STATE_TTL_S,
        "LEASES": keys.leases(""),
        "ARQ_ABORT": tagged(keys.ARQ_ABORT),
        "PAUSED": tagged(keys.PAUSED),
    }
    end = lifecycle.LUA_INDEX + hooks + lifecycle.LUA_END
    claim = lifecycle.LUA_INDEX + hooks + limits.LUA_GATE + lifecycle.LUA_STARTED + _RESTORE_LAPSED + _CLAIM
    sources = {
        "CLAIM": claim,
        "FINISH": end + _FINISH,
        "ABORT_QUEUED": end + _ABORT_QUEUED,
        "END_PLAIN": end + _END_PLAIN,
    }
    return {
        name: _script(_with_constants(src, **{k: v for k, v in constants.items() if "$" + k in src}))
        for name, src in sources.items()
    }


_BUILT = build()
CLAIM = _BUILT["CLAIM"]
FINISH = _BUILT["FINISH"]
ABORT_QUEUED = _BUILT["ABORT_QUEUED"]
END_PLAIN = _BUILT["END_PLAIN"]

# Renew the leases of running jobs (one call per tick for all of a worker's running jobs).
# KEYS: in-progress keys; ARGV[1]: new lease expiry (epoch ms), ARGV[2]: the owner id, then for
# each key its queue zset and job id. Only a marker that still exists and holds the owner's id
# is extended: a renewal that races with the job's finish (marker deleted or handed over) or
# with another worker's claim after a lapse never resurrects or steals it. -> jobs renewed
RENEW = _with_constants(
    limits.LUA_RENEW_HOLD
    + """
local at = tonumber(ARGV[1])
local n = 0
for i, k in ipairs(KEYS) do
  if redis.call('GET', k) == ARGV[2] then
    local q, id = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
    redis.call('PEXPIREAT', k, at - 1)
    redis.call('ZADD', q, 'XX', at, id)
    redis.call('ZADD', $LEASES .. q, 'XX', at, id)
    lim_renew(id, at)
    n = n + 1
  end
end
return n
""",
    LEASES=keys.leases(""),
)

# Index one job that a plain arq worker started (the engine's CLAIM indexes its own). ARGV: id
INDEX_ONE = _script(lifecycle.LUA_INDEX + "index_job(ARGV[1], index_base(), 0)\ntrim_index()\nreturn 1\n")
