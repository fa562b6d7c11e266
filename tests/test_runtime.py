"""The job runtime on a real redis-server: results, deferral, retries with backoff, timeouts,
abort and progress events, through the asyncjobs worker."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from events_support import follow

import asyncjobs
from asyncjobs import Fixed, JobAborted, JobFailed, JobStatus, job, keys
from asyncjobs.examples import count_words


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def test_enqueue_run_result(client, start_worker):
    await start_worker([count_words])
    handle = await client.enqueue(count_words, "one two three four")
    assert await handle.result(timeout=10) == 4
    info = await handle.info()
    assert info.status is JobStatus.COMPLETE
    assert info.function == "count_words"
    assert info.args == ["one two three four"]
    assert info.tries == 1


async def test_deferred_job_starts_when_asked_not_earlier_nor_later(client, start_worker, redis_url):
    started: dict[str, float] = {}

    @job(name=unique("stamp"))
    async def stamp(ctx) -> float:
        started["at"] = time.time()
        return started["at"]

    # a 10 s fallback poll: only waking for the deferred job's due time starts it in time
    await start_worker([stamp], settings=asyncjobs.Settings(redis_url=redis_url, lease=2.0, poll_delay=10.0))
    enqueued = time.time()
    handle = await client.enqueue(stamp.options(defer_by=0.6))
    assert await handle.status() is JobStatus.DEFERRED
    at = await handle.result(timeout=15)
    assert 0.6 - 0.005 <= at - enqueued < 0.6 + 1.5  # ms-resolution scores; 1.5 s for a loaded machine
    info = await handle.info()
    assert info.start_ms is not None and info.enqueue_ms is not None
    assert 595 <= info.start_ms - info.enqueue_ms < 2100


async def test_retry_with_backoff_then_success(client, start_worker):
    tries: list[int] = []

    @job(name=unique("flaky"), retries=3, backoff=Fixed(0.2))
    async def flaky(ctx) -> str:
        tries.append(ctx.job_try)
        if ctx.job_try < 3:
            raise ConnectionError(f"try {ctx.job_try} failed")
        return "ok"

    handle = await client.enqueue(flaky)
    following = await follow(handle)
    await start_worker([flaky])
    seen = await following
    assert await handle.result(timeout=5) == "ok"
    assert tries == [1, 2, 3]
    retrying = [e for e in seen if e["event"] == "retrying"]
    assert [e["try"] for e in retrying] == [1, 2]
    assert all(e["delay"] == pytest.approx(0.2) for e in retrying)
    assert retrying[0]["error"]["type"] == "ConnectionError"
    assert seen[-1]["event"] == "complete"
    started = [e for e in seen if e["event"] == "started"]
    assert [e["try"] for e in started] == [1, 2, 3]
    # the backoff was honoured: each retry started at least 0.2 s after the previous failure
    for failure, restart in zip(retrying, started[1:], strict=True):
        assert restart["ts"] - failure["ts"] >= 195
    assert (await handle.info()).tries == 3


async def test_timeout_fails_after_retries(client, start_worker):
    tries: list[int] = []

    @job(name=unique("slow"), timeout=0.2, retries=1, backoff=0)
    async def slow(ctx) -> None:
        tries.append(ctx.job_try)
        await asyncio.sleep(30)

    await start_worker([slow])
    handle = await client.enqueue(slow)
    with pytest.raises(JobFailed) as exc_info:
        await handle.result(timeout=10)
    assert exc_info.value.error_type.endswith("JobTimeout")
    assert "0.2s timeout" in exc_info.value.error_message
    assert tries == [1, 2]
    assert await handle.status() is JobStatus.FAILED


async def test_abort_queued_deferred_job(client, start_worker):
    ran: list[str] = []

    @job(name=unique("never"))
    async def never(ctx) -> None:
        ran.append(ctx.job_id)

    await start_worker([never])
    handle = await client.enqueue(never.options(defer_by=60))
    assert await handle.status() is JobStatus.DEFERRED
    assert await handle.abort(timeout=5) is True
    assert await handle.status() is JobStatus.ABORTED
    with pytest.raises(JobAborted):
        await handle.result(timeout=1)
    assert ran == []
    # it never started, yet the dashboard's history lists it, as aborted
    assert await client.redis.zscore(keys.RECENT, handle.id) is not None


async def test_abort_running_job(client, start_worker):
    running = asyncio.Event()
    cancelled = asyncio.Event()

    @job(name=unique("long"), retries=2)
    async def long(ctx) -> None:
        running.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    await start_worker([long])
    handle = await client.enqueue(long)
    await asyncio.wait_for(running.wait(), 10)
    assert await handle.status() is JobStatus.IN_PROGRESS
    assert await handle.abort(timeout=10) is True
    assert cancelled.is_set()
    assert await handle.status() is JobStatus.ABORTED
    with pytest.raises(JobAborted):
        await handle.result(timeout=1)
    # counted once in the queue's totals (with the terminal event, right after the result)
    deadline = time.monotonic() + 10
    while await client.redis.hget(keys.stats("default"), "aborted") != b"1":
        assert time.monotonic() < deadline, "the abort was not counted"
        await asyncio.sleep(0.01)


async def test_progress_events_seen_in_order(client, start_worker):
    @job(name=unique("steps"))
    async def steps(ctx, n: int) -> int:
        for i in range(1, n + 1):
            await ctx.progress(100 * i / n, f"step {i}", step=i)
        return n

    handle = await client.enqueue(steps, 5)
    following = await follow(handle)
    await start_worker([steps])
    events = await following
    kinds = [e["event"] for e in events]
    assert kinds == ["started", "progress", "progress", "progress", "progress", "progress", "complete"]
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["progress"] for e in progress] == [20.0, 40.0, 60.0, 80.0, 100.0]
    assert [e["meta"]["step"] for e in progress] == [1, 2, 3, 4, 5]
    assert [e["message"] for e in progress] == [f"step {i}" for i in range(1, 6)]
    info = await handle.info()
    assert info.progress == 100.0 and info.message == "step 5" and info.meta == {"step": 5}
    assert await handle.result(timeout=5) == 5


async def test_job_failure_reraises_typed_error(client, start_worker):
    @job(name=unique("boom"))
    async def boom(ctx, what: str) -> None:
        raise ValueError(f"bad {what}")

    await start_worker([boom])
    handle = await client.enqueue(boom, "input")
    with pytest.raises(JobFailed) as exc_info:
        await handle.result(timeout=10)
    err = exc_info.value
    assert (err.job_id, err.function) == (handle.id, boom.name)
    assert (err.error_type, err.error_message) == ("ValueError", "bad input")
    assert "raise ValueError" in (err.traceback or "")


async def test_context_resources_and_job_try(client, start_worker, redis_url):
    seen = {}

    async def startup(ctx):
        ctx["http"] = "a-session"

    @job(name=unique("ctxjob"))
    async def ctxjob(ctx) -> str:
        seen.update(job_id=ctx.job_id, try_=ctx.job_try, fn=ctx.function)
        return ctx.http

    reg = asyncjobs.Registry([ctxjob])
    settings = asyncjobs.Settings(redis_url=redis_url, lease=2.0)
    cls = asyncjobs.worker_settings(reg, settings=settings, on_startup=startup)
    from asyncjobs.connections import create_broker
    from asyncjobs.runner import build_worker

    w = build_worker(cls, {"handle_signals": False}, create_broker(redis_url))
    task = asyncio.get_running_loop().create_task(w.async_run())
    try:
        handle = await client.enqueue(ctxjob)
        assert await handle.result(timeout=10) == "a-session"
        assert seen == {"job_id": handle.id, "try_": 1, "fn": ctxjob.name}
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await w.close()


async def test_final_failure_publishes_failed_event_on_our_engine(client, start_worker):
    """The terminal ``failed`` event is published on the job's channel (not only synthesized by
    the client's polling fallback): it once went onto a copy of ctx and was never sent."""
    from asyncjobs import keys

    @job(name="always_fails_" + uuid.uuid4().hex[:6], retries=0)
    async def always_fails(ctx) -> None:
        raise RuntimeError("boom")

    handle = await client.enqueue(always_fails.options(defer_by=0.3))
    seen: list[str] = []
    async with client.hub.subscribe(keys.events(handle.id)) as queue:
        await start_worker([always_fails])
        async with asyncio.timeout(10):
            while "failed" not in seen:
                seen.append((await queue.get())["event"])
    assert seen == ["started", "failed"]
    dead_total, entries = await client.dead_letters()
    assert dead_total == 1 and entries[0].job_id == handle.id
