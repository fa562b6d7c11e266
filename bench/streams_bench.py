"""The cost of idle event streams: N clients follow ``GET /api/jobs/{id}/events`` of jobs that
stay queued (no worker runs), against a real ``asyncjobs web`` server and a private
redis-server. Prints the server's CPU (psutil, over ``--seconds``), Redis commands/s
(``total_commands_processed`` delta) and ``GET /api/queues`` latency p50/p99 while the streams
are open.

    python bench/streams_bench.py [--streams 1000] [--seconds 10] [--samples 200]

Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import aiohttp
import psutil
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.server import PrivateRedis, free_port, start_server, wait_ready  # noqa: E402


async def enqueue(redis_url: str, n: int) -> list[str]:
    import asyncjobs

    async with asyncjobs.connect(redis_url) as client:
        handles = [await client.enqueue_call("count_words", ["idle"]) for _ in range(n)]
    return [h.id for h in handles]


async def open_stream(session: aiohttp.ClientSession, url: str, opened: asyncio.Queue[int]) -> None:
    """Hold one stream open; report once its first event (the job's state) has arrived."""
    async with session.get(url) as r:
        assert r.status == 200, r.status
        reported = False
        async for line in r.content:
            if not reported and line.startswith(b"data:"):
                reported = True
                opened.put_nowait(1)


async def commands(r: aioredis.Redis) -> int:
    return int((await r.info("stats"))["total_commands_processed"])


async def queues_latency(session: aiohttp.ClientSession, base: str, samples: int) -> list[float]:
    out = []
    for _ in range(samples):
        t0 = time.perf_counter()
        async with session.get(base + "/api/queues") as r:
            assert r.status == 200, r.status
            await r.read()
        out.append((time.perf_counter() - t0) * 1000)
    return out


async def run(redis_url: str, base: str, proc: psutil.Process, args: argparse.Namespace) -> None:
    await wait_ready(base)
    ids = await enqueue(redis_url, args.streams)
    opened: asyncio.Queue[int] = asyncio.Queue()
    conn = aiohttp.TCPConnector(limit=0)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=None)
    async with aiohttp.ClientSession(connector=conn, timeout=timeout) as streams, aiohttp.ClientSession() as s:
        tasks = [asyncio.create_task(open_stream(streams, f"{base}/api/jobs/{i}/events", opened)) for i in ids]
        async with asyncio.timeout(120):
            for _ in ids:
                await opened.get()
        await asyncio.sleep(2)  # let the opening burst settle
        r = aioredis.from_url(redis_url)
        c0, cpu0, t0 = await commands(r), proc.cpu_times(), time.monotonic()
        await asyncio.sleep(args.seconds)
        c1, cpu1, t1 = await commands(r), proc.cpu_times(), time.monotonic()
        lat = await queues_latency(s, base, args.samples)
        await r.aclose()
        still_open = sum(not t.done() for t in tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    wall = t1 - t0
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall * 100
    print(f"idle streams open:      {still_open} of {len(ids)}")
    print(f"server CPU:             {cpu:.1f} % of a core (over {wall:.1f} s)")
    print(f"Redis commands/s:       {(c1 - c0 - 1) / wall:.0f}")
    lat.sort()
    print(f"/api/queues latency:    p50 {statistics.median(lat):.1f} ms, p99 {lat[int(len(lat) * 0.99) - 1]:.1f} ms")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--streams", type=int, default=1000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--samples", type=int, default=200)
    args = p.parse_args()
    with PrivateRedis() as redis_url:
        port = free_port()
        server = start_server("web", port, redis_url)
        try:
            asyncio.run(run(redis_url, f"http://127.0.0.1:{port}", psutil.Process(server.pid), args))
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    main()
