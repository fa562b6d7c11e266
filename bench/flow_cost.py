"""``python bench/flow_cost.py``: what an enqueue with a flow-control option (dedupe, debounce,
throttle) costs, beside a plain enqueue, on a private redis-server. Not part of CI.

For each path, ``N`` one-by-one enqueues of a no-op job:
- client CPU (``time.process_time``) per enqueue;
- Redis CPU per enqueue: ``INFO commandstats`` ``usec`` of EVALSHA over the calls;
- and the ``MEMORY USAGE`` of one window key.

Paths: a plain enqueue (the ENQUEUE script); dedupe that creates (a new key each time: the
ENQUEUE_FLOW script's longest path); a dedupe hit (one key: the job is found, nothing written);
a throttle drop; a debounce that replaces the waiting job's arguments and start.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncjobs
from asyncjobs import keys
from asyncjobs.flow import DEDUPE
from bench.jobs import noop
from bench.server import PrivateRedis

N = 5_000
REPEAT = 3


@asyncjobs.job(name="bench_echo")
async def echo(ctx: Any, text: str) -> str:
    return text


async def evalsha_usec(redis: Any) -> tuple[int, int]:
    stats = (await redis.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


async def measure(client: asyncjobs.Client, placed: Any, vary: bool) -> tuple[float, float]:
    """Median over REPEAT runs of (client CPU µs, Redis CPU µs) per enqueue."""
    cpu, server = [], []
    for r in range(REPEAT):
        jobs = [placed(f"{r}-{i}") if vary else placed("same") for i in range(N)]
        calls0, usec0 = await evalsha_usec(client.redis)
        start = time.process_time()
        for fn, args in jobs:
            await client.enqueue(fn, *args)
        cpu.append((time.process_time() - start) / N * 1e6)
        calls1, usec1 = await evalsha_usec(client.redis)
        server.append((usec1 - usec0) / max(1, calls1 - calls0))
    return statistics.median(cpu), statistics.median(server)


async def main() -> None:
    with PrivateRedis() as url:
        async with asyncjobs.connect(url) as client:
            paths = [
                ("plain enqueue", lambda k: (noop, ()), True),
                ("dedupe, creates (new key)", lambda k: (noop.options(dedupe_for=600, dedupe_key=k), ()), True),
                ("dedupe, hit (same key)", lambda k: (noop.options(dedupe_for=600, dedupe_key=k), ()), False),
                ("plain enqueue, one str argument", lambda k: (echo, (k,)), True),
                ("dedupe by arguments hash, creates", lambda k: (echo.options(dedupe_for=600), (k,)), True),
                ("throttle, dropped", lambda k: (noop.options(throttle=600, throttle_key=k), ()), False),
                ("debounce, replaces", lambda k: (noop.options(debounce=600, dedupe_key=k), ()), False),
            ]
            await client.enqueue(noop)  # warm up: scripts loaded, connections open
            await client.enqueue(noop.options(dedupe_for=1, dedupe_key="warm"))
            print(f"per enqueue, median of {REPEAT} runs of {N:,}:   client CPU µs   Redis CPU µs")
            for name, placed, vary in paths:
                await client.redis.config_resetstat()
                cpu, server = await measure(client, placed, vary)
                print(f"  {name:40s} {cpu:12.1f} {server:14.1f}")
            key = keys.flow(DEDUPE, noop.name, "k:0-0")
            print(f"MEMORY USAGE of one dedupe window key: {await client.redis.memory_usage(key)} B")


if __name__ == "__main__":
    asyncio.run(main())
