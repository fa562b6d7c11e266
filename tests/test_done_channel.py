"""Awaiting results through the shared done channel (``asyncjobs:done``): every way a job ends
announces it there, so ``result()`` returns at once with no per-job subscription. The clients
here poll only every 60 s, so a result within the test's timeout proves the event path."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from arq.worker import Worker as ArqWorker
from arq.worker import get_kwargs

import asyncjobs
from asyncjobs import JobAborted, JobFailed, Settings, job, keys, worker_settings
from asyncjobs.examples import count_words

SLOW_POLL = 60.0


@pytest.fixture
async def patient(redis_url: str) -> AsyncIterator[asyncjobs.Client]:
    async with asyncjobs.connect(redis_url, poll_interval=SLOW_POLL) as c:
        yield c


async def waiting_for(handle: Any) -> asyncio.Task[Any]:
    """``handle.result()`` in a task, returned once it has seen the job unfinished and waits.
    Await it through :func:`announced`: only the done channel can end it that soon."""
    unfinished = asyncio.Event()
    real_info = handle.info

    async def info() -> Any:
        rec = await real_info()
        if not rec.status.finished:
            unfinished.set()  # result() goes straight on to wait, with no await in between
        return rec

    handle.info = info
    task = asyncio.create_task(handle.result(timeout=2 * SLOW_POLL))
    async with asyncio.timeout(10):
        await unfinished.wait()
    return task


async def announced(task: asyncio.Task[Any]) -> Any:
    async with asyncio.timeout(10):  # the poll fallback would take SLOW_POLL (60 s)
        return await task


async def numsub(client: asyncjobs.Client, channel: str) -> int:
    return int(dict(await client.redis.pubsub_numsub(channel))[channel.encode()])


async def test_result_needs_no_subscription_of_its_own(patient: Any, start_worker: Any) -> None:
    release = asyncio.Event()
    started = asyncio.Event()

    @job(name=f"held_{uuid.uuid4().hex[:8]}")
    async def held(ctx: Any) -> str:
        started.set()
        await release.wait()
        return "done"

    await start_worker([held, count_words])
    handle = await patient.enqueue(held)
    async with asyncio.timeout(10):
        await started.wait()
    waiting = await waiting_for(handle)
    assert await numsub(patient, keys.events(handle.id)) == 0
    assert await numsub(patient, keys.DONE_CHANNEL) == 1
    release.set()
    assert await announced(waiting) == "done"
    # many waiters at once share the one subscription
    handles = [await patient.enqueue(count_words, "a b") for _ in range(20)]
    assert await asyncio.gather(*(h.result(timeout=10) for h in handles)) == [2] * 20
    assert await numsub(patient, keys.DONE_CHANNEL) == 1


async def test_failures_before_start_and_aborts_are_announced(patient: Any, start_worker: Any) -> None:
    unknown = await patient.enqueue_call("no_such_function")
    waiting = await waiting_for(unknown)
    await start_worker([count_words])  # it fails before it runs: unknown function
    with pytest.raises(JobFailed):
        await announced(waiting)
    deferred = await patient.enqueue(count_words.options(defer_by=600), "later")
    waiting = await waiting_for(deferred)
    async with asyncjobs.connect(patient.url) as other:
        assert await other.job(deferred.id).abort(timeout=5) is True
    with pytest.raises(JobAborted):
        await announced(waiting)


async def test_a_plain_arq_worker_announces_too(patient: Any, redis_url: str) -> None:
    cls = worker_settings([count_words], settings=Settings(redis_url=redis_url, poll_delay=0.05))
    worker = ArqWorker(**{**get_kwargs(cls), "handle_signals": False, "burst": True})
    handle = await patient.enqueue(count_words, "one two three")
    waiting = await waiting_for(handle)
    run = asyncio.create_task(worker.async_run())
    try:
        assert await announced(waiting) == 3
    finally:
        async with asyncio.timeout(10):
            await run
        if worker._pool is not None:  # arq's own close() calls redis-py's deprecated close()
            await worker._pool.aclose(close_connection_pool=True)
