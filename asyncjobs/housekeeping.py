"""Background duties of a running worker: the worker registry heartbeat and pruning of stale
abort requests (leases are renewed from a thread: :mod:`asyncjobs.leases`)."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from arq.utils import timestamp_ms
from redis.exceptions import RedisError

from asyncjobs import keys
from asyncjobs.backoff import Fixed, Retrying
from asyncjobs.pool_ref import PoolRef

logger = logging.getLogger(__name__)

ABORT_MAX_AGE_MS = 3_600_000


def new_worker_id() -> str:
    """A worker's one id (``host:pid:random``): its lease owner, its registry entry and the
    ``worker`` of the jobs it starts. It reads as the host and pid; the random part tells apart
    two workers of one process."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class Housekeeper:
    """Runs every ``interval`` seconds while the worker lives. ``describe()``: what the
    registry entry shows of the worker (queues, concurrency, running jobs, counters)."""

    def __init__(
        self,
        worker_id: str,
        redis: PoolRef,
        describe: Callable[[], dict[str, Any]],
        interval: float,
        *,
        also: Callable[[], Awaitable[None]] | None = None,
        tags: list[str] | None = None,
    ) -> None:
        self.worker_id = worker_id
        self.tags = tags or [""]  # the hash tags of the worker's queues (asyncjobs.keys)
        self.also = also  # another duty of each tick (the worker's check for plain arq workers)
        self.redis = redis
        self.describe = describe
        self.interval = interval
        self.started_ms = timestamp_ms()

    async def run(self) -> None:
        retrying = Retrying(
            logger,
            "housekeeping: Redis unavailable ({reason}); will retry in {delay:.1f}s",
            policy=Fixed(self.interval),
        )
        while True:
            try:
                await self.tick()
            except (RedisError, OSError) as e:
                await retrying.pause(e)
                continue
            retrying.succeeded()
            await asyncio.sleep(self.interval)

    async def tick(self) -> None:
        now = timestamp_ms()
        info = {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            **self.describe(),
            "started_ms": self.started_ms,
            "heartbeat_ms": now,
        }
        async with self.redis().pipeline(transaction=False) as pipe:
            pipe.set(keys.worker(self.worker_id), orjson.dumps(info), px=int(self.interval * 5000))
            pipe.zadd(keys.WORKERS, {self.worker_id: now})
            pipe.zremrangebyscore(keys.WORKERS, "-inf", now - 60_000)
            for tag in self.tags:
                pipe.zremrangebyscore(keys.tagged(keys.ARQ_ABORT, tag), "-inf", now - ABORT_MAX_AGE_MS)
            await pipe.execute()
        if self.also is not None:
            await self.also()

    async def unregister(self) -> None:
        try:
            async with self.redis().pipeline(transaction=False) as pipe:
                pipe.delete(keys.worker(self.worker_id))
                pipe.zrem(keys.WORKERS, self.worker_id)
                await pipe.execute()
        except (RedisError, OSError):
            pass
