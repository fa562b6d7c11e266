"""Which queues live workers serve, read from the worker registry (``asyncjobs:workers``) and
arq's per-queue health line (so a plain ``arq`` worker counts too), and the warning for a
job sent to a queue nobody serves: it would wait for ever, silently."""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from arq.utils import timestamp_ms

from asyncjobs import keys

logger = logging.getLogger("asyncjobs.client")

#: a worker that has not written its heartbeat for this long is not live
LIVE_MS = 60_000
#: how long a client trusts what it read about the served queues
CACHE_S = 60.0


async def live_workers(redis: Any) -> list[dict[str, Any]]:
    """The registry entries of the workers seen in the last minute."""
    ids = await redis.zrangebyscore(keys.WORKERS, timestamp_ms() - LIVE_MS, "+inf")
    if not ids:
        return []
    blobs = await redis.mget([keys.worker(i.decode()) for i in ids])
    return [orjson.loads(b) for b in blobs if b]


async def served(redis: Any, queue: str) -> tuple[bool, list[str]]:
    """``(served, queues)``: whether a live worker serves ``queue``, and every queue the
    registered workers serve (for the message)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.exists(keys.health_check(queue))
        pipe.zrangebyscore(keys.WORKERS, timestamp_ms() - LIVE_MS, "+inf")
        arq_alive, ids = await pipe.execute()
    blobs = await redis.mget([keys.worker(i.decode()) for i in ids]) if ids else []
    queues = sorted({q for b in blobs if b for q in orjson.loads(b).get("queues", ())})
    return bool(arq_alive) or queue in queues, queues


def unserved_message(queue: str, queues: list[str]) -> str:
    live = f"live workers serve: {', '.join(queues)}" if queues else "no worker is running"
    return f"no worker serves queue {queue!r} ({live}); the job waits until one does"


class ServedQueues:
    """A client's cached view of the served queues: at most one read per queue per
    ``CACHE_S``, and one warning per queue, so enqueueing stays one round trip."""

    def __init__(self) -> None:
        self._checked: dict[str, tuple[float, str | None]] = {}

    async def check(self, redis: Any, queue: str) -> str | None:
        """The warning for ``queue`` if no live worker serves it, else ``None`` (logged the
        first time it is found unserved)."""
        now = time.monotonic()
        hit = self._checked.get(queue)
        if hit is not None and now - hit[0] < CACHE_S:
            return hit[1]
        ok, queues = await served(redis, queue)
        message = None if ok else unserved_message(queue, queues)
        if message is not None and (hit is None or hit[1] is None):
            logger.warning("%s", message)
        self._checked[queue] = (now, message)
        return message
