"""``python bench/durable_bench.py``: what a durable enqueue (``connect(durable=...)``: ``WAIT 1``
after the enqueue) costs, on a private primary with one replica on loopback. Not part of CI.

Sequential ``enqueue`` rate and ``enqueue_many`` (batches of 100) rate, plain and durable, each
measured in the same run (alternating, best of REPEAT), and the ratio printed.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

import asyncjobs
from asyncjobs.testing import RedisServer
from bench.jobs import noop

N = 3_000
BATCH = 100
REPEAT = 3


async def rate(url: str, durable: bool, many: bool) -> float:
    """Jobs per second enqueued one after another (or in batches of BATCH)."""
    async with asyncjobs.connect(url, durable=durable, default_queue="durablebench") as client:
        await client.enqueue(noop)  # connect and load the script outside the timing
        started = time.perf_counter()
        if many:
            for _ in range(N // BATCH):
                await client.enqueue_many(asyncjobs.call(noop) for _ in range(BATCH))
        else:
            for _ in range(N):
                await client.enqueue(noop)
        return N / (time.perf_counter() - started)


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        primary = RedisServer(Path(tmp) / "p", appendonly=False)
        replica = RedisServer(Path(tmp) / "r", appendonly=False, replica_of=primary.port)
        for server in (primary, replica):
            server.dir.mkdir()
            server.start()
        try:
            while redis.Redis(port=replica.port).info("replication").get("master_link_status") != "up":
                time.sleep(0.05)  # polling for the replica's first sync
            for many, label in ((False, "enqueue"), (True, f"enqueue_many({BATCH})")):
                best = {False: 0.0, True: 0.0}
                for _ in range(REPEAT):
                    for durable in (False, True):
                        best[durable] = max(best[durable], await rate(primary.url, durable, many))
                        redis.Redis(port=primary.port).flushall()
                print(
                    f"{label:>20}: plain {best[False]:8,.0f} jobs/s, durable {best[True]:8,.0f} jobs/s, "
                    f"durable/plain {best[True] / best[False]:.2f}"
                )
        finally:
            replica.stop()
            primary.stop()


if __name__ == "__main__":
    asyncio.run(main())
