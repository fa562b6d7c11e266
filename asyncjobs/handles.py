"""A job in Redis, as the client hands it out: :class:`JobHandle` asks its status, waits for
its result (event-driven, with the client's safety poll), follows its events and aborts it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Generic, cast

from arq.utils import timestamp_ms

from asyncjobs import events, keys
from asyncjobs.arq_records import aborted_result
from asyncjobs.errors import JobAborted, JobFailed, JobNotFound
from asyncjobs.lifecycle import JobEnd, Outcome
from asyncjobs.records import JobRecord, JobStatus
from asyncjobs.registry import R

if TYPE_CHECKING:
    from asyncjobs.client import Client


class JobHandle(Generic[R]):
    """A job in Redis: ask its status, wait for its result, follow its events, abort it."""

    def __init__(self, client: Client, job_id: str, queue: str | None = None, *, admission: str = "created") -> None:
        self.client = client
        self.id = job_id
        self.queue = queue
        #: what the enqueue that returned this handle did: ``"created"`` (a new job; also any
        #: handle not from an enqueue), or, with a flow-control option, ``"deduplicated"``,
        #: ``"debounced"`` (the waiting job got the new arguments and start) or ``"throttled"``
        #: (dropped: this is the job holding the window)
        self.admission = admission

    def __repr__(self) -> str:
        return f"<JobHandle {self.id}>" if self.admission == "created" else f"<JobHandle {self.id} {self.admission}>"

    @property
    def deduplicated(self) -> bool:
        """The enqueue found this job holding its dedupe window and created none."""
        return self.admission == "deduplicated"

    @property
    def debounced(self) -> bool:
        """The enqueue replaced this waiting job's arguments and pushed its start back."""
        return self.admission == "debounced"

    @property
    def throttled(self) -> bool:
        """The enqueue was dropped: this job holds the throttle window."""
        return self.admission == "throttled"

    @property
    def _queues(self) -> list[str]:
        return [self.queue] if self.queue else self.client.queues

    async def info(self) -> JobRecord:
        """Everything known about the job, in one round trip (:meth:`JobStore.get`)."""
        return await self.client.store.get(self.id, self._queues)

    async def status(self) -> JobStatus:
        return (await self.info()).status

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the job to finish and return its result.

        Event-driven (pub/sub) with a polling fallback, so it also sees jobs finished by a
        plain arq worker. Raises :class:`JobFailed` (:class:`JobAborted`) if the job failed,
        :class:`JobNotFound` if there is no such job, ``TimeoutError`` after ``timeout`` s.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with self.client.hub.finished(self.id) as done:
            while True:
                done.clear()
                rec = await self.info()
                if rec.status.finished:
                    return cast(R, rec.outcome())
                if rec.status is JobStatus.NOT_FOUND:
                    raise JobNotFound(self.id)
                wait = self.client.poll_interval
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        raise TimeoutError(
                            f"job {self.id} did not finish within {timeout}s (status {rec.status.value})"
                        )
                await events.wait_set(done, wait)

    async def events(self, *, timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield the job's events (started, progress, retrying, ...) as they happen, ending with
        its terminal event (complete, failed or aborted). A finished job yields just that; a
        job that does not exist yields ``{"event": "not_found"}``.

        Events come from the client's one shared subscription (:meth:`EventHub.job_events`):
        an idle stream costs Redis nothing but its share of one slow safety poll."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with self.client.hub.job_events(self.id) as queue:
            rec = await self.info()
            if rec.status.finished or rec.status is JobStatus.NOT_FOUND:
                async for early in self._ended_meanwhile(queue, rec):
                    yield early
                return
            started_try = None
            if (
                rec.status is JobStatus.IN_PROGRESS
                and rec.start_ms is not None
                and not await self._started_since(queue)
            ):
                # the engine publishes "started" as it claims, often before anyone subscribed
                started_try = rec.tries
                yield _started_event(rec)
            while True:
                wait = None if deadline is None else deadline - loop.time()
                event = None if wait is not None and wait <= 0 else await events.next_event(queue, wait)
                if event is None:
                    raise TimeoutError(f"job {self.id} did not finish within {timeout}s")
                kind = event.get("event")
                if kind == events.CHECK:  # the shared safety poll says the job may have ended
                    rec = await self.info()
                    if rec.status.finished or rec.status is JobStatus.NOT_FOUND:
                        yield events.terminal_event(rec)
                        return
                    continue
                if kind == events.STARTED and event.get("try") == started_try:
                    continue  # already yielded from the job's state
                yield event
                if kind in events.TERMINAL:
                    return

    async def _started_since(self, queue: asyncio.Queue[dict[str, Any]]) -> bool:
        """Whether a try started after the subscription: its events, already queued, tell the
        story in order, and a ``started`` event rebuilt from a record read later would come
        before the events of the tries that record has already left behind."""
        await self.client.hub.barrier()
        early = []
        while not queue.empty():
            early.append(queue.get_nowait())
        for event in early:  # back in their order, before anything else can arrive
            queue.put_nowait(event)
        return any(event.get("event") == events.STARTED for event in early)

    async def _ended_meanwhile(
        self, queue: asyncio.Queue[dict[str, Any]], rec: JobRecord
    ) -> AsyncIterator[dict[str, Any]]:
        """The job ended (or never existed): it may have run while we subscribed, so yield what
        was published meanwhile, then its terminal event rebuilt from the record."""
        await self.client.hub.barrier()
        while not queue.empty():
            early = queue.get_nowait()
            if early.get("event") in events.TERMINAL:
                break
            if early.get("event") != events.CHECK:
                yield early
        yield events.terminal_event(rec)

    async def abort(self, *, timeout: float = 10.0) -> bool:
        """Abort the job: a queued or deferred job is removed at once; a running one is
        cancelled by its worker. True if the job ended aborted within ``timeout``."""
        r = self.client.redis
        rec = await self.info()
        if rec.status is JobStatus.WAITING:  # a workflow node: cancelled before it is queued
            from asyncjobs import workflows

            if await workflows.cancel_waiting(self.client, self.id):
                return True
            rec = await self.info()
        if rec.status.finished or rec.status is JobStatus.NOT_FOUND:
            return rec.status is JobStatus.ABORTED
        if rec.status in (JobStatus.QUEUED, JobStatus.DEFERRED):
            outcome = await self._abort_queued(rec)
            if outcome == b"aborted":
                return True
        async with r.pipeline(transaction=False) as pipe:
            tag = keys.tag_of(keys.queue(rec.queue or self.client.default_queue))
            pipe.zadd(keys.tagged(keys.ARQ_ABORT, tag), {self.id: timestamp_ms()})
            pipe.execute_command("PUBLISH", keys.ABORT_CHANNEL, self.id)  # (a cluster pipeline has no publish)
            await pipe.execute()
        try:
            await self.result(timeout=timeout)
        except JobAborted:
            return True
        except (JobFailed, TimeoutError):
            return False
        return False

    async def _abort_queued(self, rec: JobRecord) -> bytes:
        queue_key = keys.queue(rec.queue or self.client.default_queue)
        payload = aborted_result(rec, queue_key, timestamp_ms(), self.client.redis.job_serializer)
        end = JobEnd(self.id, queue_key, Outcome.ABORTED, rec.function)
        outcome = await self.client._abort_script(
            keys=[queue_key], args=[self.id, end.queue_key, end.stats_key, payload, 3_600_000, end.event()]
        )
        return cast(bytes, outcome)


def _started_event(rec: JobRecord) -> dict[str, Any]:
    return {
        "job_id": rec.job_id,
        "event": events.STARTED,
        "ts": rec.start_ms,
        "started_ms": rec.start_ms,
        "try": rec.tries,
        "function": rec.function,
    }
