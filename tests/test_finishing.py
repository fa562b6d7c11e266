"""Finishing when Redis fails mid-call: the error reaches the job that waits for its finish, and
no task is left with an error nobody retrieves (asyncio would log it at garbage collection)."""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from asyncjobs.finishing import Finisher, shielded
from asyncjobs.leases import LeaseKeeper


class FailingRedis:
    """Only what Finisher needs: a registered script whose every call fails."""

    def register_script(self, source: str) -> Any:
        async def call(**_: Any) -> Any:
            raise RedisConnectionError("Connection closed by server.")

        return call


async def unretrieved_errors(run: Any) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, ctx: seen.append(ctx))
    try:
        await run()
        for _ in range(3):  # let finished tasks be dropped, then collect them
            await asyncio.sleep(0)
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    return seen


async def test_a_failed_batch_reaches_its_waiters_and_leaves_no_unretrieved_error() -> None:
    finisher = Finisher(FailingRedis())

    async def run() -> None:
        with pytest.raises(RedisConnectionError):
            await finisher.finish("job-1", "arq:queue", done=True)

    assert await unretrieved_errors(run) == []


async def test_a_shielded_finish_that_fails_after_its_job_was_cancelled_is_not_left_unretrieved() -> None:
    gate = asyncio.Event()

    async def finish() -> None:
        await gate.wait()
        raise RedisConnectionError("Connection closed by server.")

    async def run() -> None:
        outer = asyncio.ensure_future(shielded(finish()))
        await asyncio.sleep(0)
        outer.cancel()  # the job's task is cancelled (shutdown) while its finish goes on
        with pytest.raises(asyncio.CancelledError):
            await outer
        gate.set()
        for _ in range(3):
            await asyncio.sleep(0)

    assert await unretrieved_errors(run) == []


class HeldRedis:
    """Only what Finisher needs: a registered script whose calls wait until ``go`` is set (a
    finish held up, as by a Redis outage)."""

    def __init__(self) -> None:
        self.go = asyncio.Event()
        self.calls = 0

    def register_script(self, source: str) -> Any:
        async def call(**_: Any) -> Any:
            self.calls += 1
            await self.go.wait()

        return call


async def test_a_job_keeps_its_lease_renewed_until_its_finish_is_written() -> None:
    keeper = LeaseKeeper(lease_s=2.0)
    redis = HeldRedis()
    finisher = Finisher(redis, release=keeper.releaser)
    keeper.add("done-1", "q")
    keeper.add("retried-1", "q")
    finishing = asyncio.gather(
        finisher.finish("done-1", "q", done=True), finisher.finish("retried-1", "q", done=False, retry_score=1)
    )
    while not redis.calls:
        await asyncio.sleep(0)
    assert sorted(keeper._running_ids()) == ["done-1", "retried-1"]  # still renewed while the finish waits
    keeper.add("retried-1", "q")  # the retry taken again by this worker meanwhile: a new run
    redis.go.set()
    await asyncio.wait_for(finishing, 5)
    assert keeper._running_ids() == ["retried-1"]  # the new run stays renewed
