"""Per-queue totals of jobs that ended (``asyncjobs:stats:<queue>``), counted on every path a
job can end by: the engine's batched finish, an early failure, an abort before start."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from asyncjobs import JobAborted, JobFailed, job, keys
from asyncjobs.examples import count_words


async def totals(client: Any, queue: str = "default") -> dict[str, int]:
    return {k.decode(): int(v) for k, v in (await client.redis.hgetall(keys.stats(queue))).items()}


async def test_each_outcome_is_counted_once_per_job(client: Any, start_worker: Any) -> None:
    @job(name=f"boom_{uuid.uuid4().hex[:8]}", retries=1, backoff=0)
    async def boom(ctx: Any) -> None:
        raise ValueError("no")

    await start_worker([count_words, boom])
    for i in range(5):
        assert await (await client.enqueue(count_words, f"word {i}")).result(timeout=10) == 2
    with pytest.raises(JobFailed):
        await (await client.enqueue(boom)).result(timeout=10)  # two tries, one failure
    with pytest.raises(JobFailed):  # no worker knows it: fails before it runs
        await (await client.enqueue_call("no_such_function")).result(timeout=10)
    deferred = await client.enqueue(count_words.options(defer_by=60), "later")
    assert await deferred.abort(timeout=5) is True
    with pytest.raises(JobAborted):
        await deferred.result(timeout=1)
    assert await totals(client) == {"complete": 5, "failed": 2, "aborted": 1}
    (stats,) = await client.queue_stats(["default"])
    assert (stats.complete, stats.failed, stats.aborted) == (5, 2, 1)


async def test_counts_are_per_queue(client: Any, start_worker: Any) -> None:
    await start_worker([count_words], queues=["high", "default"])
    await (await client.enqueue(count_words.options(queue="high"), "a b c")).result(timeout=10)
    assert await totals(client, "high") == {"complete": 1}
    assert await totals(client, "default") == {}


async def test_a_finish_sent_again_counts_nothing_twice(client: Any) -> None:
    """After a lost reply the client reconnects and sends the same FINISH again: the job is
    counted only by the call that removed it from its queue."""
    from asyncjobs.finishing import Finisher
    from asyncjobs.lifecycle import JobEnd, Outcome

    handle = await client.enqueue(count_words, "x")
    finisher = Finisher(client.redis)
    for _ in range(2):
        await finisher.finish(
            handle.id,
            keys.queue("default"),
            done=True,
            end=JobEnd(handle.id, keys.queue("default"), Outcome.COMPLETE, "count_words"),
        )
    assert await totals(client) == {"complete": 1}
    assert await client.redis.zscore(keys.queue("default"), handle.id) is None
