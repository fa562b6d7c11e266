"""Test helper (not a fixture): follow a job's events from before it starts."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncjobs import JobHandle, keys


async def follow(handle: JobHandle[Any], timeout: float = 15) -> asyncio.Task[list[dict[str, Any]]]:
    """Collect ``handle.events()`` in a task; returns once Redis reports the subscription, so
    the caller can then start a worker knowing no event will be missed (the ``started`` event
    is published the moment a worker claims the job)."""

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in handle.events(timeout=timeout)]

    loop = asyncio.get_running_loop()
    task = loop.create_task(collect())
    channel = keys.events(handle.id)
    deadline = loop.time() + 5
    while (await handle.client.redis.pubsub_numsub(channel))[0][1] < 1:
        assert not task.done(), task
        assert loop.time() < deadline, "handle.events() did not subscribe within 5 s"
        await asyncio.sleep(0.005)
    return task
