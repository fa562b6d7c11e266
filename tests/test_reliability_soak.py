"""Soak: three worker processes (two ``asyncjobs worker``, one plain ``arq``) on one Redis;
every job runs exactly once under normal operation. CI runs SOAK_JOBS=3000 (the default);
the full size is ``SOAK_JOBS=50000 pytest tests/test_reliability_soak.py -s``."""

from __future__ import annotations

import collections
import os
import time

from reliability_app import read_runs, rel_work
from reliability_support import wait_for

import asyncjobs
from asyncjobs import keys

SOAK_JOBS = int(os.environ.get("SOAK_JOBS", "3000"))


async def test_soak_three_mixed_workers_nothing_lost_nothing_twice(rel_workers):
    # the plain arq worker starts first (it polls, so it would otherwise rarely win a job); the
    # asyncjobs workers join once it has run some: from then on all three share the queue
    arq = rel_workers.start("arq")
    await wait_for(lambda: "Starting worker" in arq.output(), "the arq worker to start", timeout=30)
    timeout = 60 + SOAK_JOBS / 200
    async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:
        t0 = time.monotonic()
        handles = await client.enqueue_many(asyncjobs.call(rel_work, 0.001) for _ in range(SOAK_JOBS))
        enqueued_in = time.monotonic() - t0
        ids = [h.id for h in handles if h is not None]
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
        f"\nsoak: {SOAK_JOBS} jobs on 3 workers (2 asyncjobs + 1 arq) in {elapsed:.2f}s = "
        f"{SOAK_JOBS / elapsed:.0f} jobs/s (enqueue {SOAK_JOBS / enqueued_in:.0f}/s); "
        f"lost {len(lost)}, run twice {len(twice)}; per worker {sorted(by_pid.values())}"
    )
    assert len(ids) == SOAK_JOBS
    assert lost == [] and twice == []
    assert queue_left == 0
    assert all(p.proc.poll() is None for p in procs)
    assert procs[2].proc.pid in by_pid  # the plain arq worker took part


async def _stored(client, ids: list[str]) -> bool:
    n = 0
    for i in range(0, len(ids), 5000):
        async with client.redis.pipeline(transaction=False) as pipe:
            for job_id in ids[i : i + 5000]:
                pipe.exists(keys.result(job_id))
            n += sum(await pipe.execute())
    return n == len(ids)
