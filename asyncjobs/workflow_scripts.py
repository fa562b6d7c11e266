"""The Lua side of workflows: the fan-in run in the call that ends a job, and the scripts that
create, start and abort a workflow.

A node is a job whose ``arq:job:<id>`` key is written when the workflow is created but which
is not in its queue while it waits (``st`` = ``waiting`` in ``asyncjobs:node:<id>``): no
worker, plain arq included, can see it. When a job ends, :data:`LUA_ON_END`'s
``workflow_on_end`` (called by the end-of-job script, in the same atomic call) marks it ended
once (``HSETNX end``) and counts it at each child once (``HSETNX e:<parent>``); the child whose
count reaches its number of parents is put in its queue (``ZADD``) in that same call, or is
cancelled (skipped) with the reason when its policy says so, transitively.

Node policies (``pol``): ``fast`` runs when every parent completed, and is cancelled as soon as
one did not; ``all`` and ``ignore`` run once every parent ended, however (the runtime passes
failures along, or drops them); ``success`` / ``failure`` are callbacks: run when every parent
completed / when every parent ended and one did not, else skipped.
"""

from __future__ import annotations

from asyncjobs import keys
from asyncjobs.lua import with_constants as _with_constants

# the library every workflow script shares (Lua source, constants filled in)
_LIB = _with_constants(
    """
local function wf_now_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end
local function wf_note(wf, id, event, reason)
  redis.call('PUBLISH', $WF .. wf .. ':events', cjson.encode({workflow = wf, job_id = id, event = event,
    reason = reason}))
end
-- a node of workflow wf ended with outcome (complete, failed, aborted, cancelled, skipped):
-- its state is kept as long as results are (the workflow's 'keep'), the workflow's once all ended
local function wf_ended(wf, id, outcome, reason)
  local wk = $WF .. wf
  if outcome == 'failed' or outcome == 'aborted' then redis.call('HSETNX', wk, 'failed_node', id) end
  if outcome ~= 'complete' and outcome ~= 'skipped' then redis.call('HINCRBY', wk, 'failed', 1) end
  wf_note(wf, id, outcome, reason)
  local h = redis.call('HMGET', wk, 'total', 'keep')
  local keep = h[2]
  if keep then redis.call('PEXPIRE', $NODE .. id, keep) end
  if redis.call('HINCRBY', wk, 'ended', 1) >= tonumber(h[1] or 0) then
    redis.call('HSET', wk, 'st', 'ended', 'ended_ms', wf_now_ms())
    wf_note(wf, '', 'workflow_ended', nil)
    if keep then
      for _, k in ipairs({wk, wk .. ':nodes', wk .. ':sinks'}) do redis.call('PEXPIRE', k, keep) end
    end
  end
  return keep
end
-- put a waiting node in its queue (or cancel it: its workflow was aborted) -> true if queued
local function wf_release(id, todo)
  local nk = $NODE .. id
  local h = redis.call('HMGET', nk, 'q', 'w', 'd', 'p', 'wf')
  if redis.call('HGET', $WF .. h[5], 'aborted') then
    todo[#todo + 1] = {id, 'cancelled', 'the workflow was aborted'}
    return false
  end
  local score = wf_now_ms()
  local d, p = tonumber(h[3] or 0), tonumber(h[4] or 0)
  if d > 0 then score = score + d elseif p > 0 then score = score - p * $STEP end
  score = string.format('%.0f', score)
  redis.call('HSET', nk, 'st', 'queued')
  redis.call('ZADD', h[1], score, id)
  redis.call('PUBLISH', h[2], score)
  wf_note(h[5], id, 'queued', nil)
  return true
end
-- parent ended with outcome o: count it at child (once) and decide the child's fate
local function wf_edge(parent, child, o, todo)
  local ck = $NODE .. child
  if redis.call('HSETNX', ck, 'e:' .. parent, o) == 0 then return end
  local h = redis.call('HMGET', ck, 'st', 'pol', 'need')
  if h[1] ~= 'waiting' then return end
  local pol = h[2]
  if o ~= 'complete' then
    redis.call('HINCRBY', ck, 'nfail', 1)
    if pol == 'fast' then
      todo[#todo + 1] = {child, 'cancelled', parent .. ' ' .. o}
      return
    elseif pol == 'success' then
      todo[#todo + 1] = {child, 'skipped', parent .. ' ' .. o}
      return
    end
  end
  if redis.call('HINCRBY', ck, 'done', 1) < tonumber(h[3]) then return end
  if pol == 'failure' and not redis.call('HGET', ck, 'nfail') then
    todo[#todo + 1] = {child, 'skipped', 'no parent failed'}
    return
  end
  wf_release(child, todo)
end
local function wf_children(nk)
  local ch = redis.call('HGET', nk, 'ch')
  local out = {}
  if ch then for c in string.gmatch(ch, '[^,]+') do out[#out + 1] = c end end
  return out
end
-- end the nodes in todo that never ran (cancelled, skipped) and everything that follows
-- from that; ids of the ended nodes are added to done
local function wf_settle(todo, done)
  while #todo > 0 do
    local item = table.remove(todo)
    local id, st, reason = item[1], item[2], item[3]
    local nk = $NODE .. id
    if redis.call('HGET', nk, 'st') == 'waiting' and redis.call('HSETNX', nk, 'end', st) == 1 then
      redis.call('HSET', nk, 'st', st, 'reason', reason)
      redis.call('PUBLISH', $EVENTS .. id, cjson.encode({job_id = id, event = 'aborted', reason = reason,
        state = st}))
      done[#done + 1] = id
      local keep = wf_ended(redis.call('HGET', nk, 'wf'), id, st, reason)
      if keep then redis.call('PEXPIRE', $JOB .. id, keep) end
      for _, c in ipairs(wf_children(nk)) do wf_edge(id, c, st, todo) end
    end
  end
end
""",
    WF=keys.workflow(""),
    NODE=keys.node(""),
    JOB=keys.job(""),
    EVENTS=keys.events(""),
    STEP=keys.PRIORITY_STEP_MS,
)

#: Lua source defining ``workflow_on_end(id, q, outcome)`` (and its helpers): the end-of-job
#: script calls it once per terminal end of a job; it is idempotent per job id. A job that is
#: no workflow node and that no workflow waits on costs one HMGET.
LUA_ON_END = _LIB + _with_constants(
    """
local function workflow_on_end(id, q, outcome)
  local nk = $NODE .. id
  local h = redis.call('HMGET', nk, 'st', 'ch', 'wf')
  if not h[1] and not h[2] then return end
  if redis.call('HSETNX', nk, 'end', outcome) == 0 then return end
  if h[1] then
    redis.call('HSET', nk, 'st', outcome)
    wf_ended(h[3], id, outcome, nil)
  end
  local todo, done = {}, {}
  for _, c in ipairs(wf_children(nk)) do wf_edge(id, c, outcome, todo) end
  wf_settle(todo, done)
  if #done > 0 then redis.call('PUBLISH', $DONE, cjson.encode(done)) end
end
""",
    NODE=keys.node(""),
    DONE=keys.DONE_CHANNEL,
)

# Write a batch of waiting nodes (nothing runs until START). ARGV: workflow id, ttl ms, then 3
# fields per node: id, payload, and its fields joined by tabs: queue key, wake channel, defer
# ms, priority, parents needed, policy, children (comma-separated), output ('1' or ''),
# function (last: the only one that may hold a tab) -> {} or {'taken', id}
NODES = _with_constants(
    """
local wf, ttl = ARGV[1], ARGV[2]
for i = 3, #ARGV, 3 do
  local id = ARGV[i]
  if redis.call('EXISTS', $JOB .. id, $RESULT .. id, $IN_PROGRESS .. id, $NODE .. id) > 0 then
    return {'taken', id}
  end
end
local nodes = $WF .. wf .. ':nodes'
local f = {}
for i = 3, #ARGV, 3 do
  local id, nk, meta, pos = ARGV[i], $NODE .. ARGV[i], ARGV[i + 2], 1
  for k = 1, 8 do
    local e = string.find(meta, '\t', pos, true)
    f[k] = string.sub(meta, pos, e - 1)
    pos = e + 1
  end
  redis.call('SET', $JOB .. id, ARGV[i + 1], 'PX', ttl)
  redis.call('HSET', nk, 'wf', wf, 'q', f[1], 'w', f[2], 'need', f[5], 'pol', f[6], 'st', 'waiting',
    'fn', string.sub(meta, pos))
  if f[3] ~= '0' then redis.call('HSET', nk, 'd', f[3]) end
  if f[4] ~= '0' then redis.call('HSET', nk, 'p', f[4]) end
  if f[7] ~= '' then redis.call('HSET', nk, 'ch', f[7]) end
  redis.call('PEXPIRE', nk, ttl)
  redis.call('RPUSH', nodes, id)
  if f[8] ~= '' then redis.call('RPUSH', $WF .. wf .. ':sinks', id) end
end
redis.call('PEXPIRE', nodes, ttl)
redis.call('PEXPIRE', $WF .. wf .. ':sinks', ttl)
return {}
""",
    JOB=keys.job(""),
    RESULT=keys.result(""),
    IN_PROGRESS=keys.in_progress(""),
    NODE=keys.node(""),
    WF=keys.workflow(""),
)

# Start a workflow whose nodes are written: its hash, the edges from jobs outside it, and its
# roots put in their queues, atomically. ARGV: workflow id, ttl ms, total nodes, created ms,
# result kind ('one' | 'list'), keep ms (how long an ended node's state is kept: its result's
# retention), number of roots, the roots, then (parent, child, outcome) per outside parent: outcome ''
# for a parent that has not ended (its job key must still exist: else nothing is written and
# {'ended', parent} returned, so the caller reads its outcome and starts again) -> {}
START = _LIB + _with_constants(
    """
local wf, ttl = ARGV[1], tonumber(ARGV[2])
local nroots = tonumber(ARGV[7])
local first_edge = 8 + nroots
for i = first_edge, #ARGV, 3 do
  if ARGV[i + 2] == '' and redis.call('EXISTS', $JOB .. ARGV[i]) == 0 then return {'ended', ARGV[i]} end
end
local wk = $WF .. wf
redis.call('HSET', wk, 'total', ARGV[3], 'ended', 0, 'failed', 0, 'st', 'running', 'created_ms', ARGV[4],
  'kind', ARGV[5], 'keep', ARGV[6])
redis.call('PEXPIRE', wk, ttl)
local todo, done = {}, {}
for i = first_edge, #ARGV, 3 do
  local parent, child, o = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local pk = $NODE .. parent
  if o == '' then o = redis.call('HGET', pk, 'end') or '' end  -- a node that never ran ended
  if o == '' then
    local ch = redis.call('HGET', pk, 'ch')
    redis.call('HSET', pk, 'ch', ch and (ch .. ',' .. child) or child)
    if redis.call('PTTL', pk) < ttl then redis.call('PEXPIRE', pk, ttl) end
  else
    wf_edge(parent, child, o, todo)
  end
end
for i = 8, 7 + nroots do
  if redis.call('HGET', $NODE .. ARGV[i], 'st') == 'waiting' then wf_release(ARGV[i], todo) end
end
wf_settle(todo, done)
if #done > 0 then redis.call('PUBLISH', $DONE, cjson.encode(done)) end
return {}
""",
    JOB=keys.job(""),
    WF=keys.workflow(""),
    NODE=keys.node(""),
    DONE=keys.DONE_CHANNEL,
)

# Abort a workflow: mark it aborted (a node that becomes due from now on is cancelled instead)
# and cancel every waiting node. ARGV: workflow id -> ids of its queued (or running) nodes,
# which the caller aborts as jobs; false if there is no such workflow
ABORT = _LIB + _with_constants(
    """
local wk = $WF .. ARGV[1]
if redis.call('EXISTS', wk) == 0 then return false end
redis.call('HSET', wk, 'aborted', 1)
local todo, done, queued = {}, {}, {}
for _, id in ipairs(redis.call('LRANGE', wk .. ':nodes', 0, -1)) do
  local st = redis.call('HGET', $NODE .. id, 'st')
  if st == 'waiting' then
    todo[#todo + 1] = {id, 'cancelled', 'the workflow was aborted'}
  elseif st == 'queued' then
    queued[#queued + 1] = id
  end
end
wf_settle(todo, done)
if #done > 0 then redis.call('PUBLISH', $DONE, cjson.encode(done)) end
return queued
""",
    WF=keys.workflow(""),
    NODE=keys.node(""),
    DONE=keys.DONE_CHANNEL,
)

# Cancel one waiting node (a job handle's abort) and what follows from it. ARGV: job id,
# reason -> 1 if it was waiting, else 0 (it was queued meanwhile: abort it as a job)
CANCEL = _LIB + _with_constants(
    """
local todo, done = {{ARGV[1], 'cancelled', ARGV[2]}}, {}
wf_settle(todo, done)
if #done > 0 then redis.call('PUBLISH', $DONE, cjson.encode(done)) end
return #done > 0 and 1 or 0
""",
    DONE=keys.DONE_CHANNEL,
)
