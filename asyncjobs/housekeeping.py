"""Background duties of a running worker: the worker registry heartbeat and pruning of stale
abort requests (leases are renewed from a thread: :mod:`asyncjobs.leases`)."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING

import orjson
from arq.utils import timestamp_ms
from redis.exceptions import RedisError

from asyncjobs import keys
from asyncjobs.backoff import Fixed, Retrying

if TYPE_CHECKING:
    from asyncjobs.worker import Worker

logger = logging.getLogger(__name__)

ABORT_MAX_AGE_MS = 3_600_000


class Housekeeper:
    """Runs every ``lease / 3`` seconds while the worker lives."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{id(worker):x}"
        self.started_ms = timestamp_ms()

    @property
    def interval(self) -> float:
        return max(0.2, self.worker.lease_s / 3)

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
        w = self.worker
        now = timestamp_ms()
        running = dict(w.running)
        info = {
            "id": self.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "queues": w.queue_names,
            "concurrency": w.max_jobs,
            "running": len(running),
            "jobs_complete": w.jobs_complete,
            "jobs_failed": w.jobs_failed,
            "jobs_retried": w.jobs_retried,
            "started_ms": self.started_ms,
            "heartbeat_ms": now,
        }
        async with w.pool.pipeline(transaction=False) as pipe:
            pipe.set(keys.worker(self.worker_id), orjson.dumps(info), px=int(self.interval * 5000))
            pipe.zadd(keys.WORKERS, {self.worker_id: now})
            pipe.zremrangebyscore(keys.WORKERS, "-inf", now - 60_000)
            pipe.zremrangebyscore(keys.ARQ_ABORT, "-inf", now - ABORT_MAX_AGE_MS)
            await pipe.execute()

    async def unregister(self) -> None:
        try:
            async with self.worker.pool.pipeline(transaction=False) as pipe:
                pipe.delete(keys.worker(self.worker_id))
                pipe.zrem(keys.WORKERS, self.worker_id)
                await pipe.execute()
        except (RedisError, OSError):
            pass
