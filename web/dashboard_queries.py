"""Bounded reads behind the dashboard: job lists over the queues (waiting jobs) and the
recent-jobs index (``asyncjobs:recent``, started and ended jobs), the overview and the cron
table. Nothing here walks the keyspace: a request reads at most ``SCAN_BUDGET`` ids."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from arq.utils import timestamp_ms

from asyncjobs.cron import cron_table as cron_table  # the Cron page's table, shared with the CLI
from asyncjobs.records import JobRecord, JobStatus
from asyncjobs.store import JobList, JobStore
from web.responses import dumps

CHUNK = 250  # ids read per round trip while filtering
SCAN_BUDGET = 5_000  # ids one filtered request may examine before it returns a cursor
TIME_BUDGET_S = 0.04  # ...or this much time, whichever comes first
TEXT_MAX = 120


@dataclass(frozen=True)
class JobFilter:
    """What the Jobs page asks for. Empty fields match everything."""

    state: str = ""
    queue: str = ""
    function: str = ""
    text: str = ""

    @property
    def empty(self) -> bool:
        return not (self.state or self.queue or self.function or self.text)

    def matches(self, s: dict[str, Any]) -> bool:
        if self.state and s["status"] != self.state:
            return False
        if self.queue and s["queue"] != self.queue:
            return False
        if self.function and s["function"] != self.function:
            return False
        return not self.text or self.text.lower() in s["_haystack"]


def _preview(value: Any) -> str:
    text = dumps(value).decode()
    return text if len(text) <= TEXT_MAX else text[: TEXT_MAX - 1] + "…"


def _summary(rec: JobRecord) -> dict[str, Any]:
    args = _preview({"args": rec.args, "kwargs": rec.kwargs}) if rec.args or rec.kwargs else ""
    error = (rec.error or {}).get("message") or ""
    return {
        "job_id": rec.job_id,
        "status": rec.status.value,
        "function": rec.function,
        "queue": rec.queue,
        "tries": rec.tries,
        "enqueue_ms": rec.enqueue_ms,
        "start_ms": rec.start_ms,
        "finish_ms": rec.finish_ms,
        "progress": rec.progress,
        "args": args,
        "error": str(error)[:TEXT_MAX],
        "_haystack": f"{rec.job_id} {rec.function} {args} {error}".lower(),
    }


async def summaries(store: JobStore, ids: list[str]) -> list[dict[str, Any]]:
    """One summary per id, from :meth:`JobStore.many` (the records the API shows)."""
    return [_summary(rec) for rec in await store.many(ids)]


def _public(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in s.items() if not k.startswith("_")} for s in items]


WAITING = frozenset({JobStatus.QUEUED.value, JobStatus.DEFERRED.value})


@dataclass(frozen=True)
class _Section:
    """One job list the page reads, newest first, and which of its jobs it shows: a queue
    shows its waiting jobs (its running ones are in the recent index), the recent index shows
    the rest (its waiting ones, retries and re-queues, are in a queue)."""

    jobs: JobList
    size: int

    def shows(self, s: dict[str, Any]) -> bool:
        return (s["status"] in WAITING) == self.jobs.waiting


async def _sections(store: JobStore, flt: JobFilter) -> list[_Section]:
    # only the deployment's queues are read as queues: a filter is user input, and a key
    # under arq's prefix may be something else (arq:queue:health-check is a string)
    names = [q for q in store.queues if q == flt.queue] if flt.queue else store.queues
    use_queues = not flt.state or flt.state in WAITING
    use_recent = not flt.state or flt.state not in WAITING
    wanted = [store.waiting_in(n) for n in names if use_queues] + (store.recent_lists() if use_recent else [])
    sizes = await store.sizes(wanted)
    return [_Section(jobs, size) for jobs, size in zip(wanted, sizes, strict=True)]


async def list_jobs(store: JobStore, flt: JobFilter, *, cursor: int = 0, limit: int = 50) -> dict[str, Any]:
    """A page of jobs: the waiting jobs of each queue (latest scheduled first), then the recent
    index of started and ended jobs (newest first). ``cursor`` is a position in that sequence;
    the answer's ``next_cursor`` continues from where this request stopped (``None`` at the end).
    A request examines at most ``SCAN_BUDGET`` ids (or ``TIME_BUDGET_S``)."""
    sections = await _sections(store, flt)
    total = sum(sec.size for sec in sections)
    found: list[dict[str, Any]] = []
    pos, scanned, started = cursor, 0, time.monotonic()
    chunk = limit  # a filtered read starts at a page's worth and doubles: a filter most jobs pass
    while len(found) < limit and pos < total and scanned < SCAN_BUDGET and time.monotonic() - started < TIME_BUDGET_S:
        sec, offset = _locate(sections, pos)
        want = limit - len(found) if flt.empty else chunk
        chunk = min(CHUNK, chunk * 2)  # (state=queued) fills its page from the first read
        ids = await store.ids(sec.jobs, offset, min(want, CHUNK))
        if not ids:  # the set shrank since it was counted: go on with the next one
            pos = sum(x.size for x in sections[: sections.index(sec) + 1])
            continue
        for n, s in enumerate(await summaries(store, ids)):
            if sec.shows(s) and flt.matches(s):
                found.append(s)
                if len(found) == limit:
                    ids = ids[: n + 1]
                    break
        pos += len(ids)
        scanned += len(ids)
    return {
        "jobs": _public(found),
        "total": total,
        "scanned": scanned,
        "next_cursor": pos if pos < total else None,
        "filtered": not flt.empty,
    }


def _locate(sections: list[_Section], pos: int) -> tuple[_Section, int]:
    for sec in sections:
        if pos < sec.size:
            return sec, pos
        pos -= sec.size
    raise IndexError(pos)  # callers keep pos below the total


async def overview(store: JobStore) -> dict[str, Any]:
    """Per-queue counts, oldest-job age and totals of jobs that ended (complete, failed,
    aborted), workers online and dead letters."""
    now = timestamp_ms()
    stats = await store.queue_stats()
    workers = await store.workers()
    dead = await store.dead_count()
    rows = [
        {**q.as_dict(), "oldest_age_s": (now - q.oldest_queued_ms) / 1000 if q.oldest_queued_ms else None}
        for q in stats
    ]
    return {
        "queues": rows,
        "workers_online": len(workers),
        "dead": dead,
        "now_ms": now,
    }
