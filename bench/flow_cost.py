"""``python bench/flow_cost.py``: what an enqueue with a flow-control option (dedupe, debounce,
throttle) costs, beside a plain enqueue, on a private redis-server. Not part of CI.

For each path, ``N`` one-by-one enqueues of a no-op job, the paths taking turns ``REPEAT`` times:
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

N = 3_000
REPEAT = 5


@asyncjobs.job(name="bench_echo")
async def echo(ctx: Any, text: str) -> str:
    return text


async def evalsha_usec(redis: Any) -> tuple[int, int]:
    stats = (await redis.info("commandstats")).get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


async def run_once(client: asyncjobs.Client, placed: Any, vary: bool, tag: str) -> tuple[float, float]:
    """(client CPU µs, Redis CPU µs) per enqueue over N enqueues of one path."""
    jobs = [placed(f"{tag}-{i}") if vary else placed("same") for i in range(N)]
    calls0, usec0 = await evalsha_usec(client.redis)
    start = time.process_time()
    for fn, args in jobs:
        await client.enqueue(fn, *args)
    cpu = (time.process_time() - start) / N * 1e6
    calls1, usec1 = await evalsha_usec(client.redis)
    return cpu, (usec1 - usec0) / max(1, calls1 - calls0)


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
            # the paths take turns, REPEAT rounds, so a busy moment of the host hits them alike
            results: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in paths}
            for r in range(REPEAT):
                for name, placed, vary in paths:
                    results[name].append(await run_once(client, placed, vary, str(r)))
            base = statistics.median(s for _, s in results["plain enqueue"])
            print(f"per enqueue, median of {REPEAT} rounds of {N:,}:  client CPU µs  Redis CPU µs  Redis / plain")
            for name, runs in results.items():
                cpu, server = statistics.median(c for c, _ in runs), statistics.median(s for _, s in runs)
                print(f"  {name:40s} {cpu:12.1f} {server:13.1f} {server / base:13.2f}x")
            key = keys.flow(DEDUPE, noop.name, f"k:{REPEAT - 1}-0")
            print(f"MEMORY USAGE of one dedupe window key: {await client.redis.memory_usage(key)} B")


if __name__ == "__main__":
    asyncio.run(main())
