"""The storage seam: everything the client, the API, the dashboard and the metrics read from
Redis, behind one :class:`JobStore` over a broker connection. Callers never build a key.

- job records: :meth:`JobStore.get` (one job, one round trip) and :meth:`JobStore.many`
  (a page of jobs, two or three round trips), with one status decision, :func:`status_of`;
- queues: :meth:`JobStore.queue_stats`; workers: :meth:`JobStore.workers`;
- dead letters (:mod:`asyncjobs.deadletter`): list, count, get, take/put back, purge;
- job lists the dashboard pages through: a queue's waiting jobs and the recent-jobs index
  (:class:`JobList`);
- events, through the process's one :class:`~asyncjobs.events.EventHub`.

A new field of a job record is read with the others (a field of the job's state hash: add it
to :data:`STATE_FIELDS`) and filled in :meth:`JobStore._record`.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from arq.utils import timestamp_ms

from asyncjobs import deadletter, keys, pausing
from asyncjobs.arq_records import Deserializer, fill_from_job, fill_from_result
from asyncjobs.cluster import is_cluster
from asyncjobs.events import EventHub
from asyncjobs.limits import PARKED_SCORE
from asyncjobs.queue_stats import read_queue_stats
from asyncjobs.records import JobRecord, JobStatus, QueueStats
from asyncjobs.registry import QUEUE_RE
from asyncjobs.serialization import deserialize
from asyncjobs.serving import live_workers

WAITING = frozenset({JobStatus.QUEUED, JobStatus.DEFERRED})


def status_of(
    ended: JobStatus | None,
    *,
    job: bool,
    running: bool,
    score: float | None,
    now_ms: int,
    node: JobStatus | None = None,
) -> JobStatus:
    """Where a job is, from what Redis holds about it (arq's own rules, as ``Job.status()``):
    how its result record says it ended, else in progress while its in-progress key lives,
    else waiting in its queue (deferred while its score lies ahead), else, for a workflow
    node that is in no queue, what its node says (waiting for its parents, or cancelled:
    aborted), else not found.

    ``ended``: the outcome in its result record (``None`` without one); ``job``: its job
    record exists; ``running``: its in-progress key exists; ``score``: its score in its queue;
    ``node``: :func:`node_status` of its workflow node.
    """
    if ended is not None:
        return ended
    if not job:
        return JobStatus.NOT_FOUND
    if running:
        return JobStatus.IN_PROGRESS
    if score is None:
        return node or JobStatus.NOT_FOUND
    if score >= PARKED_SCORE:  # held by flow control: waiting to start, not scheduled for later
        return JobStatus.QUEUED
    return JobStatus.DEFERRED if score > now_ms else JobStatus.QUEUED


#: the fields of a workflow node's hash that a job record needs: state, reason, workflow id and
#: the node's queue key (a waiting node is in no queue, and its payload names no default queue)
NODE_FIELDS = ("st", "reason", "wf", "q")
_NODE_STATUS = {b"waiting": JobStatus.WAITING, b"cancelled": JobStatus.ABORTED, b"skipped": JobStatus.ABORTED}


def node_status(node: Sequence[bytes | None] | None) -> JobStatus | None:
    """The status a workflow node's state gives a job that is in no queue (``NODE_FIELDS``
    values): waiting for its parents, or aborted when it was cancelled or skipped."""
    return _NODE_STATUS.get(node[0]) if node and node[0] is not None else None


@dataclass(frozen=True)
class JobList:
    """A sorted set of job ids read newest (highest score) first: a queue's waiting jobs
    (``waiting``), or the recent-jobs index of started and ended jobs."""

    key: str
    waiting: bool


RECENT = JobList(keys.RECENT, waiting=False)


#: the fields of a job's state hash that its record shows
STATE_FIELDS = ("progress", "message", "meta", "started_ms", "waiting")


@dataclass
class _Raw:
    """What Redis holds about one job."""

    result: bytes | None
    job: bytes | None
    state: dict[str, str]
    running: int = 0
    retry: bytes | None = None
    node: Sequence[bytes | None] | None = None  # NODE_FIELDS of its workflow node, if it is one

    @property
    def open(self) -> bool:
        """A job record without a result: waiting or running (its marker and score decide)."""
        return self.result is None and self.job is not None


def _state(values: Sequence[bytes | None]) -> dict[str, str]:
    return {f: v.decode() for f, v in zip(STATE_FIELDS, values, strict=True) if v is not None}


class JobStore:
    """Reads (and the dead-letter moves) over one Redis connection. ``queues``: the queues a
    job is looked for in when its record does not name one."""

    def __init__(self, redis: Any, *, hub: EventHub | None = None, queues: Sequence[str] = (keys.DEFAULT_QUEUE,)):
        self.redis = redis
        self.hub = hub
        self.queues = list(queues)
        #: the hash tags of the queues (``[""]``: untagged), whose set-wide keys are read
        self.tags = list(dict.fromkeys(keys.tag_of(keys.queue(q)) for q in self.queues))
        self.cluster = is_cluster(redis)
        self.deserializer: Deserializer = getattr(redis, "job_deserializer", None) or deserialize

    # --- job records ----------------------------------------------------------------------
    async def get(self, job_id: str, queues: Sequence[str] | None = None, *, _again: bool = True) -> JobRecord:
        """Everything known about one job, in one round trip (two when its record names a
        queue that is not one of ``queues``, default the store's)."""
        searched = list(queues or self.queues)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.result(job_id))
            pipe.get(keys.job(job_id))
            pipe.hmget(keys.state(job_id), STATE_FIELDS)
            pipe.exists(keys.in_progress(job_id))
            pipe.get(keys.retry(job_id))
            pipe.hmget(keys.node(job_id), NODE_FIELDS)
            pipe.hkeys(keys.paused_of(job_id))
            for q in searched:
                pipe.zscore(keys.queue(q), job_id)
            result, job, state, running, retry, node, paused, *scores = await pipe.execute()
        raw = _Raw(result, job, _state(state), running, retry, node)
        rec, ended = self._decoded(job_id, raw)
        found = next(((q, s) for q, s in zip(searched, scores, strict=True) if s is not None), None)
        named = _named_queue(rec)
        if found is None and raw.open and not running and named is not None and named not in searched:
            score = await self.redis.zscore(keys.queue(named), job_id)
            found = (named, score) if score is not None else None
        released = found is None and raw.open and not running and node[0] is not None and node_status(node) is None
        if released and _again:  # a workflow node its parents queued between the reads above
            return await self.get(job_id, queues, _again=False)
        return self._record(rec, raw, ended, found, timestamp_ms(), paused)

    async def many(self, ids: Sequence[str], queues: Sequence[str] | None = None) -> list[JobRecord]:
        """The record of each job in ``ids``, in order: one round trip (``MGET`` of results
        and job records, each state), plus one for the jobs that have no result yet (running
        marker, tries, score in the queue their record names, else in ``queues``)."""
        if not ids:
            return []
        n = len(ids)
        async with self.redis.pipeline(transaction=False) as pipe:
            if self.cluster:  # the ids' keys are in several slots: one GET each
                for key in [keys.result(i) for i in ids] + [keys.job(i) for i in ids]:
                    pipe.get(key)
            else:
                pipe.mget([keys.result(i) for i in ids])
                pipe.mget([keys.job(i) for i in ids])
            for job_id in ids:
                pipe.hmget(keys.state(job_id), STATE_FIELDS)
            replies = await pipe.execute()
        if self.cluster:
            results, jobs, states = replies[:n], replies[n : 2 * n], replies[2 * n :]
        else:
            results, jobs, *states = replies
        raws = [_Raw(r, j, _state(s)) for r, j, s in zip(results, jobs, states, strict=True)]
        decoded = [self._decoded(job_id, raw) for job_id, raw in zip(ids, raws, strict=True)]
        opened = [n for n, raw in enumerate(raws) if raw.open]
        where = await self._read_open([raws[n] for n in opened], [decoded[n][0] for n in opened], queues)
        found = dict(zip(opened, where, strict=True))
        now = timestamp_ms()
        return [
            self._record(rec, raw, ended, found.get(n), now)
            for n, (raw, (rec, ended)) in enumerate(zip(raws, decoded, strict=True))
        ]

    async def _read_open(
        self, raws: list[_Raw], records: list[JobRecord], queues: Sequence[str] | None
    ) -> list[tuple[str, float] | None]:
        """For jobs without a result, in one round trip: the running marker and tries (into
        ``raws``) and where each waits: (queue, score) in the queue its record names, else in
        ``queues`` (default the store's)."""
        if not records:
            return []
        candidates = [[q] if (q := _named_queue(rec)) else list(queues or self.queues) for rec in records]
        async with self.redis.pipeline(transaction=False) as pipe:
            for rec, names in zip(records, candidates, strict=True):
                pipe.exists(keys.in_progress(rec.job_id))
                pipe.get(keys.retry(rec.job_id))
                pipe.hmget(keys.node(rec.job_id), NODE_FIELDS)
                for q in names:
                    pipe.zscore(keys.queue(q), rec.job_id)
            replies = iter(await pipe.execute())
        found: list[tuple[str, float] | None] = []
        for raw, names in zip(raws, candidates, strict=True):
            raw.running, raw.retry, raw.node = next(replies), next(replies), next(replies)
            hits = [(q, s) for q in names if (s := next(replies)) is not None]
            found.append(hits[0] if hits else None)
        return found

    def _decoded(self, job_id: str, raw: _Raw) -> tuple[JobRecord, JobStatus | None]:
        """The record as arq's records have it, and how the job ended (``None``: not yet)."""
        rec = JobRecord(job_id, JobStatus.NOT_FOUND)
        ended = None
        if raw.result is not None:
            ended = fill_from_result(rec, raw.result, self.deserializer)
        elif raw.job is not None:
            fill_from_job(rec, raw.job, self.deserializer)
        return rec, ended

    @staticmethod
    def _record(
        rec: JobRecord,
        raw: _Raw,
        ended: JobStatus | None,
        found: tuple[str, float] | None,
        now: int,
        paused: Sequence[bytes] = (),
    ) -> JobRecord:
        """The record completed with its status (:func:`status_of`), queue, schedule and state."""
        score = found[1] if found else None
        node = node_status(raw.node)
        rec.status = status_of(
            ended, job=raw.job is not None, running=bool(raw.running), score=score, now_ms=now, node=node
        )
        if node is JobStatus.ABORTED and rec.status is JobStatus.ABORTED and raw.node:
            reason = (raw.node[1] or b"").decode()
            rec.error = {"type": "Cancelled", "message": reason, "traceback": None}
        if raw.node and raw.node[2]:
            rec.workflow = raw.node[2].decode()
            if rec.queue is None and raw.node[3]:
                rec.queue = keys.queue_name_of(raw.node[3].decode())
        if raw.open:
            rec.tries = int(raw.retry or 0)
            rec.queue = rec.queue or (found[0] if found else None)
        st = raw.state
        if rec.status in WAITING and score is not None:
            _waiting(rec, score, st.get("waiting"), paused, now)
        elif rec.status is JobStatus.IN_PROGRESS and "started_ms" in st:
            rec.start_ms = int(st["started_ms"])
        if "progress" in st:
            rec.progress = float(st["progress"])
            rec.message = st.get("message") or None
            rec.meta = orjson.loads(st["meta"]) if st.get("meta") else None
        return rec

    # --- flow control (asyncjobs.pausing) ----------------------------------------------------
    async def limits(self) -> list[pausing.LimitState]:
        """Each limited or paused function: its limits and their use now."""
        return await pausing.limit_states(self.redis, self.tags)

    async def paused(self) -> dict[str, list[str]]:
        """What is paused: ``{"queues": [...], "functions": [...]}``."""
        return await pausing.paused(self.redis, self.tags)

    async def pause(self, *, queue: str | None = None, function: str | None = None) -> None:
        """Pause a queue or a function (one of them; a function in every tag of the queues)."""
        if queue:
            await pausing.pause_queue(self.redis, queue)
        else:
            await pausing.pause_function(self.redis, function or "", self.tags)

    async def resume(self, *, queue: str | None = None, function: str | None = None) -> int:
        """Resume a queue or a function; -> the function's parked jobs brought back."""
        if queue:
            await pausing.resume_queue(self.redis, queue)
            return 0
        return await pausing.resume_function(self.redis, function or "", self.tags)

    async def workflow_exists(self, workflow_id: str) -> bool:
        return bool(await self.redis.exists(keys.workflow(workflow_id)))

    # --- queues and workers ---------------------------------------------------------------
    async def queue_stats(self, names: Sequence[str] | None = None) -> list[QueueStats]:
        """Counts per queue (default: the store's queues); see :mod:`asyncjobs.queue_stats`."""
        return await read_queue_stats(self.redis, list(names or self.queues))

    async def workers(self) -> list[dict[str, Any]]:
        """The live workers (seen in the last minute): id, host, pid, queues, concurrency, ..."""
        return await live_workers(self.redis)

    # --- job lists (the dashboard's history) ----------------------------------------------
    @staticmethod
    def waiting_in(queue: str) -> JobList:
        """The waiting (and running) jobs of ``queue``, latest scheduled first."""
        return JobList(keys.queue(queue), waiting=True)

    def recent_lists(self) -> list[JobList]:
        """The recent-jobs index: one per hash tag of the queues (one for untagged queues)."""
        return (
            [RECENT] if self.tags == [""] else [JobList(keys.tagged(keys.RECENT, t), waiting=False) for t in self.tags]
        )

    async def sizes(self, lists: Sequence[JobList]) -> list[int]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for lst in lists:
                pipe.zcard(lst.key)
            return [int(n) for n in await pipe.execute()]

    async def ids(self, lst: JobList, offset: int, count: int) -> list[str]:
        """Up to ``count`` ids of ``lst`` from position ``offset``, newest first."""
        return [i.decode() for i in await self.redis.zrevrange(lst.key, offset, offset + count - 1)]

    # --- dead letters ---------------------------------------------------------------------
    async def dead_letters(self, *, offset: int = 0, limit: int = 100) -> tuple[int, list[deadletter.DeadLetter]]:
        """Newest first: (total, a page of entries)."""
        return await deadletter.list_entries(self.redis, offset=offset, limit=limit, tags=self.tags)

    async def dead_count(self) -> int:
        return sum([int(await self.redis.zcard(keys.tagged(keys.DEAD, t))) for t in self.tags])

    async def dead_letter(self, job_id: str) -> deadletter.DeadLetter:
        """One entry (:class:`~asyncjobs.errors.DeadLetterNotFound` if there is none)."""
        return await deadletter.get(self.redis, job_id)

    async def take_dead(self, job_id: str) -> tuple[deadletter.DeadLetter, bytes]:
        """Remove an entry for a retry, with its stored form for :meth:`put_back_dead`; the
        job's old result, retry count and state go too, so it can run again under its id."""
        await self.redis.delete(keys.result(job_id), keys.retry(job_id), keys.state(job_id))
        return await deadletter.take(self.redis, job_id)

    async def put_back_dead(self, job_id: str, blob: bytes) -> None:
        """Undo :meth:`take_dead` (a retry that could not be enqueued)."""
        await deadletter.put_back(self.redis, job_id, blob)

    async def purge_dead(self) -> int:
        return await deadletter.purge(self.redis, self.tags)

    # --- events ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def all_events(self) -> AsyncIterator[Any]:
        """Every job's events, from the hub's one shared subscription, while the block runs."""
        if self.hub is None:
            raise RuntimeError("this JobStore has no EventHub: create it with hub=")
        async with self.hub.subscribe(keys.EVENTS_PATTERN, pattern=True) as queue:
            yield queue


def _waiting(rec: JobRecord, score: float, waiting: str | None, paused: Sequence[bytes], now: int) -> None:
    """Run-at time and priority of a waiting job, and why it waits if flow control holds it:
    parked on a limit or a paused function (its run-at time kept aside), scheduled for its
    next rate token (deferred to then), or in a paused queue (``paused``: the paused flags)."""
    if score >= PARKED_SCORE:
        rec.waiting = waiting or "paused"
        return
    rec.scheduled_ms, rec.priority = keys.decode_score(score, now)
    if rec.queue and f"q:{keys.queue(rec.queue)}".encode() in paused:
        rec.waiting = "paused"
    elif waiting and rec.status is JobStatus.DEFERRED:
        rec.waiting = waiting


def _named_queue(rec: JobRecord) -> str | None:
    """The queue the job's record names, if it is a queue name (records are user data)."""
    return rec.queue if rec.queue and QUEUE_RE.match(rec.queue) else None
