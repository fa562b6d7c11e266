"""Dashboard server-side latency with a million queued and a million finished jobs in Redis.

    python bench/dashboard_bench.py                  # starts a private redis-server
    python bench/dashboard_bench.py redis://host/0   # or uses this (empty!) database
    python bench/dashboard_bench.py --queued 1000000 --finished 1000000 --runs 40 [--quick]

Fills Redis with pipelined writes of real-format records: ``queued`` waiting jobs as the
enqueue script leaves them (the job key with its payload and TTL, the queue entry; payloads
from the client's own encoder) and ``finished`` completed jobs as the worker leaves them (the
result key, the queue's totals, the recent-jobs index capped at ``RECENT_MAX`` as the finish
script caps it). Then times every JSON endpoint a dashboard page reads, through the real aiohttp
app: Overview, Jobs (first page, deep pages in the queue and in the index, filtered pages),
a job's page, Workers, Dead letters, Cron, Functions; p50 and p95 of ``runs`` requests each.
Target: p95 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from arq.utils import timestamp_ms

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncjobs import keys
from asyncjobs.config import Settings
from asyncjobs.connections import Broker, create_broker, new_job_id
from asyncjobs.examples import FUNCTIONS
from asyncjobs.registry import EnqueueOptions, Registry
from asyncjobs.serialization import serialize
from bench.server import PrivateRedis
from web.app import create_app

TARGET_MS = 100.0
BATCH = 10_000
QUEUE_KEY = keys.queue(keys.DEFAULT_QUEUE)


async def fill_queued(redis: Broker, n: int) -> list[str]:
    """``n`` waiting ``count_words`` jobs, written as the enqueue script writes them; some ids."""
    options, sample = EnqueueOptions(), []
    for start in range(0, n, BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + BATCH, n)):
                job_id = new_job_id()
                enc = redis.encode_enqueue(
                    "count_words", [f"queued words number {i}"], {}, options, job_id=job_id, queue_key=QUEUE_KEY
                )
                _, payload, score, ttl, _ = enc.argv
                pipe.set(keys.job(job_id), payload, px=ttl or None)
                pipe.zadd(QUEUE_KEY, {job_id: score})
            await pipe.execute()
        sample.append(job_id)
    return sample


async def fill_finished(redis: Broker, n: int) -> list[str]:
    """``n`` completed jobs as the worker leaves them (result key, totals, the capped index)."""
    now, sample = timestamp_ms(), []
    indexed_from = n - keys.RECENT_MAX
    for start in range(0, n, BATCH):
        async with redis.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + BATCH, n)):
                job_id, et = f"done{i:07d}", now - (n - i) * 10
                result = {"t": 1, "f": "count_words", "a": [f"some words number {i}"], "k": {}, "et": et}
                result |= {"st": et + 1, "ft": et + 2, "q": QUEUE_KEY, "id": job_id, "s": True, "r": 4}
                pipe.set(keys.result(job_id), serialize(result), ex=86_400)
                if i >= indexed_from:
                    pipe.zadd(keys.RECENT, {job_id: et * 1000})
            pipe.hincrby(keys.stats(keys.DEFAULT_QUEUE), "complete", min(BATCH, n - start))
            await pipe.execute()
        sample.append(job_id)
    return sample


async def timed(client: TestClient, path: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        resp = await client.get(path)
        await resp.read()
        out.append((time.perf_counter() - t0) * 1000)
        assert resp.status == 200, (path, resp.status)
    return out


def pages(queued: int, finished: int, queued_id: str, finished_id: str) -> dict[str, str]:
    jobs = "/api/dashboard/jobs?limit=50"
    indexed = min(finished, keys.RECENT_MAX)
    return {
        "overview": "/api/dashboard/overview",
        "jobs, first page (newest waiting)": jobs,
        f"jobs, page at rank {queued // 2:,} (in the queue)": f"{jobs}&cursor={queued // 2}",
        f"jobs, page at rank {queued + indexed // 2:,} (in the index)": f"{jobs}&cursor={queued + indexed // 2}",
        "jobs, state=queued": f"{jobs}&state=queued",
        "jobs, state=complete": f"{jobs}&state=complete",
        "jobs, function=count_words": f"{jobs}&function=count_words",
        "jobs, text filter (1 in 1000 of the index)": f"{jobs}&state=complete&q=number%2099",
        "jobs, state=failed (no match: scan budget)": f"{jobs}&state=failed",
        "job page, a queued job": f"/api/jobs/{queued_id}",
        "job page, a finished job": f"/api/jobs/{finished_id}",
        "workers": "/api/workers",
        "dead letters": "/api/dead?limit=200",
        "cron": "/api/dashboard/cron",
        "functions": "/api/functions",
        "queues (API)": "/api/queues",
    }


async def main(url: str, a: argparse.Namespace) -> int:
    redis = create_broker(url)
    started = time.perf_counter()
    queued_ids = await fill_queued(redis, a.queued)
    finished_ids = await fill_finished(redis, a.finished)
    print(f"filled {a.queued:,} queued + {a.finished:,} finished jobs in {time.perf_counter() - started:.0f}s")
    print(f"Redis used_memory {int((await redis.info('memory'))['used_memory']) / 2**20:,.0f} MiB")
    await redis.aclose(close_connection_pool=True)
    app = create_app(Settings(redis_url=url), Registry(FUNCTIONS))
    worst = 0.0
    async with TestClient(TestServer(app)) as client:
        print(f"{a.runs} requests each, milliseconds (server round trip, loopback)")
        for name, path in pages(a.queued, a.finished, queued_ids[0], finished_ids[-1]).items():
            ms = await timed(client, path, a.runs)
            p50, p95 = statistics.median(ms), sorted(ms)[max(0, int(0.95 * len(ms)) - 1)]
            worst = max(worst, p95)
            print(f"  {name:48s} p50 {p50:6.1f}   p95 {p95:6.1f}{'   (over target)' if p95 >= TARGET_MS else ''}")
    print(f"worst p95 {worst:.1f} ms (target < {TARGET_MS:.0f} ms): {'OK' if worst < TARGET_MS else 'TOO SLOW'}")
    return 0 if worst < TARGET_MS else 1


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("url", nargs="?", help="an empty Redis database to use (default: a private redis-server)")
    p.add_argument("--queued", type=int, default=1_000_000, help="waiting jobs")
    p.add_argument("--finished", type=int, default=1_000_000, help="completed jobs")
    p.add_argument("--runs", type=int, default=40, help="requests per endpoint")
    p.add_argument("--quick", action="store_true", help="10,000 + 10,000 jobs, 5 requests each (smoke test)")
    a = p.parse_args(argv)
    if a.quick:
        a.queued, a.finished, a.runs = 10_000, 10_000, 5
    return a


if __name__ == "__main__":
    args = parse()
    if args.url:
        sys.exit(asyncio.run(main(args.url, args)))
    with PrivateRedis() as private_url:
        code = asyncio.run(main(private_url, args))
    sys.exit(code)
