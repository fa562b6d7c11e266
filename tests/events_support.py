"""Test helper (not a fixture): follow a job's events from before it starts."""

from __future__ import annotations

import asyncio
from typing import Any

from asyncjobs import JobHandle


async def follow(handle: JobHandle[Any], timeout: float = 15) -> asyncio.Task[list[dict[str, Any]]]:
    """Collect ``handle.events()`` in a task; returns once the client's hub follows the job on
    its confirmed subscription, so the caller can then start a worker knowing no event will be
    missed (the ``started`` event is published the moment a worker claims the job)."""

    async def collect() -> list[dict[str, Any]]:
        return [e async for e in handle.events(timeout=timeout)]

    loop = asyncio.get_running_loop()
    task = loop.create_task(collect())
    deadline = loop.time() + 5
    while not handle.client.hub.following(handle.id):
        assert not task.done(), task
        assert loop.time() < deadline, "handle.events() did not subscribe within 5 s"
        await asyncio.sleep(0.005)
    return task
