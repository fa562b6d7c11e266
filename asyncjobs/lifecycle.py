"""A job's lifecycle: how it starts and how it ends, written in one place.

Every way a job ends goes through ONE Lua snippet (``LUA_END``), shared by every script that
ends a job (:mod:`asyncjobs.scripts`):

* ``FINISH`` — the engine's batched finish: a normal end, a final failure (with its dead
  letter), an abort of a running job, a failure before the function ran (expired, unknown
  function, undecodable, too many tries, aborted before start), a retry or re-queue;
* ``ABORT_QUEUED`` — the abort of a job that has not started (the client);
* ``END_PLAIN`` — a job run by a plain arq worker, which wrote arq's result itself
  (:meth:`asyncjobs.runtime.Runtime.after_job_end`).

In the same atomic call, the snippet writes the terminal event, one count in the queue's totals
(``asyncjobs:stats:<queue>``), the job's id on the done channel, the recent-jobs index where a
job is indexed at its end, and the dead letter when the outcome calls for one — all of it only
if this call really ended the job, so a call sent again after a lost reply writes nothing
twice. It calls two hooks (``_HOOKS``): ``release(id, q)`` whenever a job stops holding what
its claim took (any end, a re-queue, and a lapsed lease put back by ``CLAIM``), and
``on_end(id, q, outcome)`` once per terminal end. Flow control and workflows plug in there.

The Python side: :class:`Outcome` (the event names), :class:`JobEvent` (an event as published),
:class:`JobEnd` (what one end call writes) and :class:`JobRun`, the one typed ctx slot through
which the runtime wrapper tells the engine or the plain-arq hook how a run went.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson
from arq.utils import timestamp_ms

from asyncjobs import keys, limits
from asyncjobs.lua import tagged, with_constants
from asyncjobs.workflow_scripts import LUA_ON_END


class Outcome(StrEnum):
    """How a run of a job ended; the values are the event names published for it."""

    COMPLETE = "complete"
    FAILED = "failed"
    ABORTED = "aborted"
    RETRYING = "retrying"  # runs again (its retry event is published when the try fails)
    REQUEUED = "requeued"  # cancelled at shutdown: back in its queue at its place

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({Outcome.COMPLETE, Outcome.FAILED, Outcome.ABORTED})
STARTED = "started"

#: the fields of a job's start, in this order: in its state hash and its ``started`` event, as
#: written by the runtime (plain arq) and by ``CLAIM`` (the engine; Lua built from this list)
STARTED_FIELDS = ("started_ms", "try", "worker", "function")

#: the ctx key of a run's :class:`JobRun`
CTX_RUN = "asyncjobs_run"


class JobEvent(NamedTuple):
    """One event of a job, as published on ``asyncjobs:events:<id>`` (JSON). (Immutable
    records are named tuples here: built for every job, they cost a fraction of a frozen
    dataclass.)"""

    job_id: str
    event: str
    ts: int
    data: Mapping[str, Any] = MappingProxyType({})

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "event": self.event, "ts": self.ts, **self.data}  # event: str or Outcome

    def encode(self) -> bytes:
        return orjson.dumps(self.as_dict(), default=str)

    @staticmethod
    def started(job_id: str, state: Mapping[str, Any]) -> JobEvent:
        """The ``started`` event of a run whose :func:`started_state` is ``state``."""
        return JobEvent(job_id, STARTED, int(state["started_ms"]), state)

    @staticmethod
    def ended(job_id: str, outcome: Outcome, function: str | None) -> JobEvent:
        """The event an end publishes: terminal (complete, failed, aborted) or requeued."""
        return JobEvent(job_id, outcome, timestamp_ms(), {"function": function})


def started_state(started_ms: int, job_try: int, worker: str, function: str) -> dict[str, Any]:
    """A run's start as its state hash and ``started`` event hold it (``STARTED_FIELDS``)."""
    return dict(zip(STARTED_FIELDS, (started_ms, job_try, worker, function), strict=True))


class JobEnd(NamedTuple):
    """What one end call writes for a job: its outcome, event, count and dead letter."""

    job_id: str
    queue_key: str
    outcome: Outcome
    function: str | None = None
    dead_letter: bytes | None = None  # a dead-letter entry (:func:`asyncjobs.deadletter.encode_entry`)

    @property
    def stats_key(self) -> str:
        """The totals hash the end is counted in (terminal outcomes only)."""
        return keys.stats(keys.queue_name_of(self.queue_key))

    def event(self) -> bytes:
        return JobEvent.ended(self.job_id, self.outcome, self.function).encode()


@dataclass(slots=True)
class JobRun:
    """One run of a job, shared through ``ctx[CTX_RUN]`` by whoever runs it: the engine
    creates it (``engine=True``: it writes the start and the end itself); under a plain arq
    worker the runtime wrapper does, and ``after_job_end`` writes the end from it."""

    engine: bool = False
    outcome: Outcome | None = None  # set by the runtime wrapper when the function returns or raises
    cancelled: bool = False  # the function was cancelled: aborted, or shut down and re-queued
    dead_letter: bytes | None = None  # a final failure's dead-letter entry, written with the end
    started_ms: int | None = None  # plain arq: when the wrapper started the run (the end's guard)

    @property
    def metrics_outcome(self) -> str:
        """The outcome label of the run's duration metric."""
        if self.outcome is not None:
            return self.outcome.value
        return "cancelled" if self.cancelled else Outcome.FAILED.value


def job_run(ctx: dict[str, Any]) -> JobRun:
    """The :class:`JobRun` of the run ``ctx`` belongs to (created on first use)."""
    run = ctx.get(CTX_RUN)
    if not isinstance(run, JobRun):
        run = ctx[CTX_RUN] = JobRun()
    return run


# ---- Lua ------------------------------------------------------------------------------------

# The hooks of flow control and workflows (see the module docstring), called inside the call
# that claims or ends a job. Both must be idempotent: a call sent again after a lost reply
# calls them again. A module that plugs in defines its Lua function and is called from here.
_HOOKS = (
    limits.LUA_RELEASE
    + LUA_ON_END
    + """
local function release(id, q)
  limits_release(id, q)
end
local function on_end(id, q, outcome)
  workflow_on_end(id, q, outcome)
end
"""
)
HOOKS = _HOOKS

# The recent-jobs index (the dashboard's history of started and ended jobs; waiting jobs are
# listed from the queues themselves, so enqueue writes no index entry). Scores are Redis' clock
# in microseconds, kept above the newest entry, plus the job's place in this call: exact
# newest-first order. '%.0f' keeps every digit (Lua prints %.14g).
LUA_INDEX = with_constants(
    """
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
""",
    RECENT=tagged(keys.RECENT),
    RECENT_MAX=keys.RECENT_MAX,
)


def _lua_started() -> str:
    """``job_started(id, st, origin)``: the state hash and ``started`` event of a claimed job,
    from the Lua table ``st`` holding ``STARTED_FIELDS`` (``origin``: its queue score)."""
    hset = ", ".join(f"'{f}', st['{f}']" for f in STARTED_FIELDS)
    event = ", ".join(f"['{f}'] = st['{f}']" for f in STARTED_FIELDS)
    return with_constants(
        f"""
local function job_started(id, st, origin)
  local sk = $STATE .. id
  redis.call('HSET', sk, {hset}, 'queue_score', origin)
  redis.call('EXPIRE', sk, $STATE_TTL)
  local ev = {{job_id = id, event = '{STARTED}', ts = st['started_ms'], {event}}}
  redis.call('PUBLISH', $EVENTS .. id, cjson.encode(ev))
end
""",
        STATE=keys.state(""),
        STATE_TTL=keys.STATE_TTL_S,
        EVENTS=keys.events(""),
    )


LUA_STARTED = _lua_started()

# The end of a job. ``job_ended`` writes one end (``fresh``: this call really ended the job; a
# call sent again is not fresh and writes nothing but the idempotent release); ``end_flush``,
# once per call, adds the counts and publishes the ids that ended on the done channel.
# ``job_requeued``: a job that goes back to its queue (retry, shutdown). Needs LUA_INDEX and
# the hooks before it.
LUA_END = with_constants(
    """
local ended, tally = {}, {}
local function dead_letter(id, entry)
  local t = redis.call('TIME')
  redis.call('SET', $DEAD_PREFIX .. id, entry, 'EX', $DEAD_TTL)
  redis.call('ZADD', $DEAD, string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000)), id)
  redis.call('ZREMRANGEBYRANK', $DEAD, 0, -$DEAD_MAX - 1)
end
local function job_requeued(id, q, event)
  release(id, q)
  if event ~= '' then redis.call('PUBLISH', $EVENTS .. id, event) end
end
local function job_ended(id, q, stats, outcome, event, dead, fresh, indexed)
  release(id, q)
  if not fresh then return end
  if dead ~= '' then dead_letter(id, dead) end
  if indexed then
    index_job(id, index_base(), 0)
    trim_index()
  end
  local counts = tally[stats]
  if not counts then
    counts = {}
    tally[stats] = counts
  end
  counts[outcome] = (counts[outcome] or 0) + 1
  if event ~= '' then redis.call('PUBLISH', $EVENTS .. id, event) end
  ended[#ended + 1] = id
  on_end(id, q, outcome)
end
local function end_flush()
  for stats, counts in pairs(tally) do
    for outcome, n in pairs(counts) do redis.call('HINCRBY', stats, outcome, n) end
  end
  if #ended > 0 then redis.call('PUBLISH', $DONE, cjson.encode(ended)) end
end
""",
    DEAD_PREFIX=keys.dead(""),
    DEAD=tagged(keys.DEAD),
    DEAD_TTL=keys.DEAD_TTL_S,
    DEAD_MAX=keys.DEAD_MAX,
    EVENTS=keys.events(""),
    DONE=keys.DONE_CHANNEL,
)


def plain_end_args(end: JobEnd, run: JobRun) -> list[Any]:
    """ARGV of ``scripts.END_PLAIN`` for a run a plain arq worker ended or re-queued (a retry's
    event was published when its try failed: a retry only releases)."""
    if not end.outcome.terminal:
        event = end.event() if end.outcome is Outcome.REQUEUED else b""
        return [end.job_id, end.queue_key, "", event, "", "", ""]
    token = "" if run.started_ms is None else run.started_ms
    return [end.job_id, end.queue_key, end.outcome.value, end.event(), end.stats_key, end.dead_letter or b"", token]
