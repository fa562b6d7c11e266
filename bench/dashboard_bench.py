"""Dashboard server-side latency with 100,000 completed jobs in Redis.

    python bench/dashboard_bench.py                  # starts a private redis-server
    python bench/dashboard_bench.py redis://host/0   # or uses this (empty!) database

Fills Redis with N completed jobs exactly as the worker leaves them (result key + the
recent-jobs index), then times the dashboard's JSON endpoints through the real aiohttp app:
the Jobs page (first page, a deep page, filtered pages) and the Overview. Target: < 100 ms.
"""

from __future__ import annotations

import asyncio
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from arq.utils import timestamp_ms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncjobs import keys
from asyncjobs.config import Settings
from asyncjobs.connections import create_broker
from asyncjobs.examples import FUNCTIONS
from asyncjobs.registry import Registry
from asyncjobs.serialization import serialize
from asyncjobs.testing import free_port
from web.app import create_app

N = 100_000
RUNS = 30
TARGET_MS = 100.0


async def fill(url: str, n: int) -> None:
    redis = create_broker(url)
    now = timestamp_ms()
    batch = 5_000
    for start in range(0, n, batch):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + batch, n)):
                job_id = f"bench{i:06d}"
                et = now - (n - i) * 10
                pipe.set(
                    keys.result(job_id),
                    serialize(
                        {
                            "t": 1,
                            "f": "count_words",
                            "a": [f"some words number {i}"],
                            "k": {},
                            "et": et,
                            "st": et + 1,
                            "ft": et + 2,
                            "q": keys.queue(keys.DEFAULT_QUEUE),
                            "id": job_id,
                            "s": True,
                            "r": 4,
                        }
                    ),
                    ex=3600,
                )
                pipe.zadd(keys.RECENT, {job_id: et})
            await pipe.execute()
    await redis.aclose(close_connection_pool=True)


async def timed(client: TestClient, path: str) -> list[float]:
    out = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        resp = await client.get(path)
        await resp.read()
        out.append((time.perf_counter() - t0) * 1000)
        assert resp.status == 200, (path, resp.status)
    return out


async def main(url: str) -> int:
    await fill(url, N)
    app = create_app(Settings(redis_url=url), Registry(FUNCTIONS))
    paths = {
        "jobs, first page": "/api/dashboard/jobs?limit=50",
        "jobs, page at rank 90,000": "/api/dashboard/jobs?limit=50&cursor=90000",
        "jobs, state=complete": "/api/dashboard/jobs?limit=50&state=complete",
        "jobs, text filter (matches 1 in 1000)": "/api/dashboard/jobs?limit=50&q=number%2099",
        "jobs, state=failed (no match: scan budget)": "/api/dashboard/jobs?limit=50&state=failed",
        "overview": "/api/dashboard/overview",
    }
    worst = 0.0
    async with TestClient(TestServer(app)) as client:
        print(f"{N:,} completed jobs in Redis; {RUNS} requests each, milliseconds (server round trip, loopback)")
        for name, path in paths.items():
            ms = await timed(client, path)
            p50, p95 = statistics.median(ms), sorted(ms)[int(0.95 * len(ms)) - 1]
            worst = max(worst, p95)
            print(f"  {name:45s} p50 {p50:6.1f}   p95 {p95:6.1f}")
    print(f"worst p95 {worst:.1f} ms (target < {TARGET_MS:.0f} ms): {'OK' if worst < TARGET_MS else 'TOO SLOW'}")
    return 0 if worst < TARGET_MS else 1


def private_redis() -> tuple[subprocess.Popen[bytes], str, str]:
    port = free_port()
    tmp = tempfile.mkdtemp(prefix="dashbench")
    exe = shutil.which("redis-server") or "redis-server"
    proc = subprocess.Popen(
        [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp], stdout=subprocess.DEVNULL
    )
    return proc, f"redis://127.0.0.1:{port}/0", tmp


if __name__ == "__main__":
    if len(sys.argv) > 1:
        sys.exit(asyncio.run(main(sys.argv[1])))
    proc, redis_url, tmpdir = private_redis()
    try:
        import redis as sync_redis

        for _ in range(200):  # wait for the server to accept connections
            try:
                sync_redis.Redis.from_url(redis_url).ping()
                break
            except sync_redis.ConnectionError:
                time.sleep(0.02)
        sys.exit(asyncio.run(main(redis_url)))
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmpdir, ignore_errors=True)
