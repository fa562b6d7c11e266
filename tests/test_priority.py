"""Job priority: a score offset in arq's queue, so due jobs of higher priority are taken first
(by the engine and by plain arq workers), FIFO within one priority, and times read back
decoded."""

from __future__ import annotations

import asyncio
import signal
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.utils import timestamp_ms
from arq.worker import Worker as ArqWorker
from arq.worker import get_kwargs

import asyncjobs
from asyncjobs import ConfigError, JobContext, JobStatus, Settings, keys, worker_settings
from asyncjobs.registry import EnqueueOptions

ORDER = "test:priority:order"
GATES: dict[str, asyncio.Event] = {}


@asyncjobs.job
async def record_start(ctx: JobContext, label: str) -> None:
    await ctx.redis.rpush(ORDER, label)


@asyncjobs.job
async def gated(ctx: JobContext, label: str, gate: str) -> None:
    await ctx.redis.rpush(ORDER, label)
    await GATES[gate].wait()


async def wait_until(predicate: Any, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def started(client: asyncjobs.Client, n: int) -> list[str]:
    async def enough() -> bool:
        return int(await client.redis.llen(ORDER)) >= n

    await wait_until(enough)
    return [x.decode() for x in await client.redis.lrange(ORDER, 0, -1)]


# --- the score model ----------------------------------------------------------------------
NOW = 1_760_000_000_000  # 2025-10


@pytest.mark.parametrize("priority", range(keys.PRIORITY_MAX + 1))
@pytest.mark.parametrize("waited_ms", [0, 1, 86_400_000, keys.PRIORITY_STEP_MS - 1])
def test_score_decodes_to_run_at_and_priority(priority: int, waited_ms: int) -> None:
    score = keys.priority_score(NOW, priority)
    assert score > 0
    assert keys.decode_score(score, NOW + waited_ms) == (NOW, priority)
    band_low, band_high = keys.priority_bands(NOW + waited_ms)[priority]
    assert score <= band_high and (band_low == "-inf" or score > int(band_low.lstrip("(")))


def test_decoding_bound_and_future_scores() -> None:
    # a job due for longer than one step reads as one level higher (documented bound)
    late = NOW + keys.PRIORITY_STEP_MS
    assert keys.decode_score(keys.priority_score(NOW, 2), late) == (late, 3)
    assert keys.decode_score(NOW + 5_000, NOW) == (NOW + 5_000, 0)  # deferred job or lease
    assert keys.priority_score(946_684_800_000, keys.PRIORITY_MAX) > 0  # enqueued in 2000: still positive


@pytest.mark.parametrize("bad", [-1, 10, True, 1.5, "5", None])
def test_priority_must_be_a_whole_number_0_to_9(bad: Any) -> None:
    with pytest.raises(ConfigError, match=r"priority .* whole number from 0") as e:
        record_start.options(priority=bad)
    assert e.value.key == "priority"


@pytest.mark.parametrize(
    "defer",
    [{"defer_by": 10}, {"defer_by": 0}, {"defer_until": datetime.now(UTC) + timedelta(seconds=60)}],
)
def test_priority_with_a_deferral_is_refused(defer: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="cannot be combined with defer_by or defer_until") as e:
        record_start.options(priority=3, **defer)
    assert e.value.key == "priority"
    with pytest.raises(ConfigError, match="cannot be combined"):  # also when given in two steps
        record_start.options(priority=3).options(**defer)
    assert record_start.options(priority=0, **defer).enqueue_options.priority == 0


def test_options_carry_and_merge_priority() -> None:
    f = record_start.options(priority=7).options(job_id="x")
    assert f.enqueue_options == EnqueueOptions(job_id="x", priority=7)


async def test_broker_scores_a_priority_its_options_allowed(broker: Any) -> None:
    with pytest.raises(ConfigError, match="cannot be combined"):
        EnqueueOptions(defer_by=5, priority=2)
    enc = broker.encode_enqueue("f", (), {}, EnqueueOptions(priority=2), job_id="id2", queue_key=keys.queue("default"))
    assert keys.decode_score(enc.argv[2], timestamp_ms()) == (pytest.approx(timestamp_ms(), abs=2_000), 2)
    assert enc.run_at_ms == enc.now_ms  # the run-at time, not the score


# --- enqueue, inspect -----------------------------------------------------------------------
async def test_bad_priority_by_name_writes_nothing(client: asyncjobs.Client) -> None:
    with pytest.raises(ConfigError, match="priority 12"):
        await client.enqueue_call("record_start", ["x"], priority=12)
    with pytest.raises(ConfigError, match="cannot be combined"):
        await client.enqueue_call("record_start", ["x"], priority=1, defer_by=30)
    assert await client.redis.zcard(keys.queue("default")) == 0


async def test_info_and_queue_stats_decode_priority_scores(client: asyncjobs.Client) -> None:
    now = timestamp_ms()
    older = await client.enqueue(record_start.options(defer_until=datetime.now(UTC) - timedelta(seconds=60)), "old")
    urgent = await client.enqueue(record_start.options(priority=9), "urgent")
    plain = await client.enqueue_call("record_start", ["plain"])

    info = await urgent.info()
    assert info.status is JobStatus.QUEUED and info.priority == 9
    assert info.scheduled_ms is not None and abs(info.scheduled_ms - now) < 5_000
    assert info.scheduled_ms == info.enqueue_ms  # due the moment it was enqueued
    assert (await plain.info()).priority == 0
    old_info = await older.info()
    # a past defer_until means now: due when it was enqueued, at its own priority
    assert old_info.priority == 0 and old_info.scheduled_ms == old_info.enqueue_ms
    assert old_info.scheduled_ms <= info.scheduled_ms

    [stats] = await client.queue_stats(["default"])
    assert stats.queued == 3 and stats.deferred == 0
    # the longest-waiting job, though the priority-9 job sorts first in the queue
    assert stats.oldest_queued_ms == old_info.scheduled_ms
    assert 0 <= stats.oldest_queued_ms - now < 5_000


# --- workers take due jobs by priority ---------------------------------------------------------
async def enqueue_mixed(client: asyncjobs.Client) -> list[str]:
    """Low priority first, high last, through each enqueue path; the expected start order."""
    for i in range(4):
        await client.enqueue_call("record_start", [f"p0-{i}"])
    for i in range(4):
        await client.enqueue(record_start.options(priority=5), f"p5-{i}")
    p9 = record_start.options(priority=9)
    handles = await client.enqueue_many(asyncjobs.call(p9, f"p9-{i}") for i in range(4))
    assert all(h is not None for h in handles)
    return [f"p{p}-{i}" for p in (9, 5, 0) for i in range(4)]


async def test_engine_starts_higher_priority_first_and_fifo_within(client, start_worker, redis_url) -> None:
    expected = await enqueue_mixed(client)
    await start_worker([record_start], settings=Settings(redis_url=redis_url, concurrency=1, lease=2.0))
    assert await started(client, len(expected)) == expected


async def test_plain_arq_worker_honours_priority(client, redis_url) -> None:
    expected = await enqueue_mixed(client)
    cls = worker_settings([record_start], settings=Settings(redis_url=redis_url, concurrency=1, poll_delay=0.05))
    arq_worker = ArqWorker(**{**get_kwargs(cls), "handle_signals": False, "burst": True})
    assert type(arq_worker) is ArqWorker
    try:
        async with asyncio.timeout(20):  # burst: it returns once the queue is empty
            await arq_worker.async_run()
    finally:
        if arq_worker._pool is not None:  # arq's own close() calls redis-py's deprecated close()
            await arq_worker._pool.aclose(close_connection_pool=True)
    assert await started(client, len(expected)) == expected


async def test_job_cancelled_by_shutdown_keeps_its_place_and_priority(client, start_worker, redis_url) -> None:
    gate = uuid.uuid4().hex
    GATES[gate] = asyncio.Event()
    settings = Settings(redis_url=redis_url, concurrency=1, lease=2.0)
    try:
        a = await start_worker([gated], settings=settings)
        long = await client.enqueue(gated.options(priority=9), "long", gate)
        await started(client, 1)
        for label in ("p0-a", "p0-b"):  # wait behind it (concurrency 1)
            await client.enqueue(gated, label, gate)

        a.handle_sig_wait_for_completion(signal.SIGTERM)  # drain...
        a.handle_sig_wait_for_completion(signal.SIGTERM)  # ...then cancel and re-queue at once

        async def requeued() -> bool:
            return (await long.info()).status is JobStatus.QUEUED

        await wait_until(requeued)
        info = await long.info()
        assert info.priority == 9 and info.scheduled_ms == info.enqueue_ms  # its original score

        GATES[gate].set()
        await start_worker([gated], settings=settings)
        assert await started(client, 4) == ["long", "long", "p0-a", "p0-b"]
    finally:
        GATES.pop(gate).set()
