"""``python bench/client_cost.py``: what one enqueue costs the client, and what one queued job
costs Redis, on a private redis-server. Not part of CI.

Client CPU (``time.process_time``) per call, each path measured in the same run:
- a bare redis-py ``PING`` (the floor of one round trip through redis-py);
- ``enqueue`` on the enqueue line (the default) and through the connection pool (what it did
  before the line, and what a concurrent enqueue that finds the line busy still does);
- ``enqueue_many`` per job, batches on the line and pipelined through the pool.

Then the stored size of one no-op job: its payload and ``MEMORY USAGE`` of its job key, asyncjobs
(msgpack) beside plain arq (pickle).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from arq.connections import RedisSettings, create_pool

import asyncjobs
from asyncjobs import keys
from bench.jobs import noop
from bench.server import PrivateRedis

N = 10_000
REPEAT = 3


async def cpu_us(calls: int, run: Callable[[], Awaitable[Any]]) -> float:
    """Median over REPEAT runs of the client CPU µs per call of ``run`` (which makes ``calls``)."""
    runs = []
    for _ in range(REPEAT):
        start = time.process_time()
        await run()
        runs.append((time.process_time() - start) / calls * 1e6)
    return statistics.median(runs)


async def main() -> None:
    with PrivateRedis() as url:
        async with asyncjobs.connect(url) as client:
            broker = client.redis
            line = broker._line

            async def ping() -> None:
                for _ in range(N):
                    await broker.ping()

            async def one_by_one() -> None:
                for _ in range(N):
                    await client.enqueue(noop)

            async def many() -> None:
                await client.enqueue_many(asyncjobs.call(noop) for _ in range(N))

            await one_by_one()  # warm up: scripts loaded, connections open
            rows = [("PING", await cpu_us(N, ping))]
            rows.append(("enqueue, enqueue line", await cpu_us(N, one_by_one)))
            rows.append(("enqueue_many per job, enqueue line", await cpu_us(N, many)))
            broker._line = None  # the pool's path
            rows.append(("enqueue, connection pool", await cpu_us(N, one_by_one)))
            rows.append(("enqueue_many per job, connection pool", await cpu_us(N, many)))
            broker._line = line
            print(f"client CPU per call, µs (median of {REPEAT} runs of {N:,}):")
            for name, us in rows:
                print(f"  {name:40s} {us:7.1f}")

            await broker.flushall()
            ours = await client.enqueue(noop)
            arq_pool = await create_pool(RedisSettings.from_dsn(url))
            try:
                theirs = await arq_pool.enqueue_job("arq_noop")
                assert theirs is not None
                print("one queued no-op job:           asyncjobs   arq")
                sizes = (("payload bytes", broker.strlen), ("MEMORY USAGE of its job key", broker.memory_usage))
                for what, call in sizes:
                    print(f"  {what:30s} {await call(keys.job(ours.id)):9d} {await call(keys.job(theirs.job_id)):5d}")
            finally:
                await arq_pool.aclose()


if __name__ == "__main__":
    asyncio.run(main())
