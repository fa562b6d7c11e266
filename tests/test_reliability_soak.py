"""Soak: three worker processes (two ``asyncjobs worker``, one plain ``arq``) plus the web server
(``asyncjobs web``) on one Redis; half the jobs are enqueued over HTTP (``POST /api/jobs``, 32
requests in flight), half from Python; every job runs exactly once under normal operation. CI
runs SOAK_JOBS=3000 (the default); the full size is
``SOAK_JOBS=50000 pytest tests/test_reliability_soak.py -s -o timeout=600``."""

from __future__ import annotations

import asyncio
import collections
import os
import time

import aiohttp
from reliability_app import read_runs, rel_work
from reliability_support import wait_for

import asyncjobs
from asyncjobs import keys
from asyncjobs.testing import free_port

SOAK_JOBS = int(os.environ.get("SOAK_JOBS", "3000"))
HTTP_IN_FLIGHT = 32


async def test_soak_three_mixed_workers_and_web_nothing_lost_nothing_twice(rel_workers):
    # the plain arq worker starts first (it polls, so it would otherwise rarely win a job); the
    # asyncjobs workers join once it has run some: from then on all three share the queue
    arq = rel_workers.start("arq")
    web = rel_workers.start_web(port := free_port())
    base = f"http://127.0.0.1:{port}"
    n_http = SOAK_JOBS // 2
    timeout = 60 + SOAK_JOBS / 200
    async with (
        asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=HTTP_IN_FLIGHT)) as http,
    ):
        await wait_for(lambda: "Starting worker" in arq.output(), "the arq worker to start", timeout=30)
        await wait_for(lambda: _ready(http, base), "the web server to be ready", timeout=30)
        t0 = time.monotonic()
        py_handles, (http_ids, http_s) = await asyncio.gather(
            client.enqueue_many(asyncjobs.call(rel_work, 0.001) for _ in range(SOAK_JOBS - n_http)),
            _enqueue_http(http, base, n_http),
        )
        enqueued_in = time.monotonic() - t0
        ids = [h.id for h in py_handles if h is not None] + http_ids
        await wait_for(lambda: read_runs(rel_workers.runlog), "the arq worker to run jobs")
        procs = [rel_workers.start("asyncjobs"), rel_workers.start("asyncjobs"), arq]
        await wait_for(lambda: _stored(client, ids), f"{SOAK_JOBS} results", timeout=timeout, interval=0.1)
        elapsed = time.monotonic() - t0
        queue_left = await client.redis.zcard(keys.queue(rel_workers.queue))

    runs = read_runs(rel_workers.runlog)
    starts = collections.Counter(r[0] for r in runs)
    by_pid = collections.Counter(r[2] for r in runs)
    twice = [i for i, n in starts.items() if n > 1]
    lost = [i for i in ids if starts[i] == 0]
    print(
        f"\nsoak: {SOAK_JOBS} jobs ({n_http} over HTTP, {SOAK_JOBS - n_http} from Python) on 3 workers "
        f"(2 asyncjobs + 1 arq) + web in {elapsed:.2f}s = {SOAK_JOBS / elapsed:.0f} jobs/s "
        f"(enqueue {SOAK_JOBS / enqueued_in:.0f}/s, HTTP alone {n_http / http_s:.0f} req/s); "
        f"lost {len(lost)}, run twice {len(twice)}; per worker {sorted(by_pid.values())}"
    )
    assert len(http_ids) == n_http and len(set(http_ids)) == n_http
    assert len(ids) == SOAK_JOBS and len(set(ids)) == SOAK_JOBS
    assert lost == [] and twice == []
    assert queue_left == 0
    assert all(p.proc.poll() is None for p in [*procs, web])
    assert procs[2].proc.pid in by_pid  # the plain arq worker took part


async def _ready(http: aiohttp.ClientSession, base: str) -> bool:
    try:
        async with http.get(base + "/readyz") as r:
            return r.status == 200
    except aiohttp.ClientConnectionError:
        return False


async def _enqueue_http(http: aiohttp.ClientSession, base: str, n: int) -> tuple[list[str], float]:
    """``n`` jobs through ``POST /api/jobs``, at most HTTP_IN_FLIGHT at once; their ids and the time."""
    sem = asyncio.Semaphore(HTTP_IN_FLIGHT)

    async def one(i: int) -> str:
        async with sem, http.post(base + "/api/jobs", json={"function": "rel_work", "args": [0.001]}) as r:
            body = await r.json()
            assert r.status == 202, (i, r.status, body)
            return str(body["job_id"])

    t0 = time.monotonic()
    ids = await asyncio.gather(*(one(i) for i in range(n)))
    return list(ids), time.monotonic() - t0


async def _stored(client, ids: list[str]) -> bool:
    n = 0
    for i in range(0, len(ids), 5000):
        async with client.redis.pipeline(transaction=False) as pipe:
            for job_id in ids[i : i + 5000]:
                pipe.exists(keys.result(job_id))
            n += sum(await pipe.execute())
    return n == len(ids)
