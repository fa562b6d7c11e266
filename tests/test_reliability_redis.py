"""Redis faults: a restart (AOF on) with 2,000 jobs in flight, and Redis unreachable when a
worker starts. Each test has a redis-server of its own to stop and start."""

from __future__ import annotations

import collections
import time

from reliability_app import read_runs, rel_work
from reliability_support import Workers, wait_for

import asyncjobs
from asyncjobs import JobStatus, keys

JOBS = 2000
OUTAGE_S = 1.0
DOWN_AT_START_S = 4.0
START_MARGIN_S = 0.8  # a loaded machine; the old backoff (0.5 s doubling to 10 s) took 4 s and more


async def _results_stored(client, ids: list[str]) -> int:
    async with client.redis.pipeline(transaction=False) as pipe:
        for i in ids:
            pipe.exists(keys.result(i))
        return sum(await pipe.execute())


async def test_redis_restart_with_2000_jobs_in_flight(private_redis, tmp_path):
    server = private_redis()
    workers = Workers(tmp_path, server.url)
    try:
        procs = [workers.start(), workers.start()]
        async with asyncjobs.connect(server.url, default_queue=workers.queue) as client:
            t0 = time.monotonic()
            handles = await client.enqueue_many(asyncjobs.call(rel_work, 0.2) for _ in range(JOBS))
            ids = [h.id for h in handles if h is not None]
            assert len(ids) == JOBS
            await wait_for(lambda: len(read_runs(workers.runlog)) >= JOBS // 4, "a quarter of the jobs to start")

            server.stop()  # SHUTDOWN: AOF fsynced; every client connection drops
            down_at = time.monotonic()
            # keep it down for a second at least, and until both workers are reconnecting
            await wait_for(
                lambda: time.monotonic() - down_at > OUTAGE_S and all("lost Redis" in p.output() for p in procs),
                "both workers to notice Redis is gone",
                timeout=20,
            )
            server.start()  # same port, same dir: the AOF is replayed
            outage = time.monotonic() - down_at

            done = await wait_for(lambda: _all_stored(client, ids), "every job to complete", timeout=90)
            elapsed = time.monotonic() - t0
            statuses = collections.Counter([(await client.job(i).status()) for i in ids[:50]])
        alive = [p.proc.poll() is None for p in procs]
    finally:
        workers.close()

    starts = collections.Counter(r[0] for r in read_runs(workers.runlog))
    duplicates = sum(1 for i in ids if starts[i] > 1)
    print(
        f"\nRedis restart: {JOBS} jobs, Redis down {outage:.2f}s, all complete in {elapsed:.1f}s; "
        f"{duplicates} job(s) started twice ({duplicates / JOBS:.2%}), 0 lost"
    )
    assert done
    assert alive == [True, True]  # the workers rode out the restart
    assert statuses == {JobStatus.COMPLETE: 50}
    assert all(starts[i] >= 1 for i in ids)  # nothing lost
    assert duplicates == 0  # as the README claims: a restart with AOF on re-runs nothing


async def _all_stored(client, ids: list[str]) -> bool:
    return await _results_stored(client, ids) == len(ids)


async def test_worker_waits_for_unreachable_redis_then_recovers(private_redis, tmp_path):
    server = private_redis(start=False)  # port chosen, nothing listening yet
    workers = Workers(tmp_path, server.url)
    try:
        w = workers.start()
        await wait_for(lambda: w.output().count("next attempt") >= 2, "two retry log lines", timeout=20)
        assert w.proc.poll() is None
        server.start()
        await wait_for(lambda: "connected to Redis" in w.output(), "the worker to connect", timeout=30)
        async with asyncjobs.connect(server.url, default_queue=workers.queue) as client:
            handle = await client.enqueue(rel_work, 0.0)
            assert await handle.result(timeout=10) == w.proc.pid
    finally:
        workers.close()
    lines = [line for line in w.output().splitlines() if "next attempt" in line]
    print("\n" + "\n".join(lines[:3]))
    assert f"cannot reach Redis at redis://127.0.0.1:{server.port}/0" in lines[0]
    assert "attempt 1, next attempt in 0.0" in lines[0]  # backing off from 50 ms ...
    assert int(lines[1].split("attempt ")[1].split(",")[0]) >= 5  # ... one line every few seconds
    assert "after" in w.output().split("connected to Redis", 1)[1].splitlines()[0]


async def test_worker_starts_work_within_a_second_of_redis_coming_up(private_redis, tmp_path):
    server = private_redis(start=False)
    workers = Workers(tmp_path, server.url)
    try:
        w = workers.start()
        await wait_for(lambda: "cannot reach Redis" in w.output(), "the first failed attempt", timeout=20)
        first_failure = time.monotonic()
        # Redis stays away long enough for the retry delay to grow to its cap
        await wait_for(lambda: time.monotonic() - first_failure > DOWN_AT_START_S, "the outage", timeout=20)
        server.start()  # returns once Redis answers PING
        up_at = time.time()
        async with asyncjobs.connect(server.url, default_queue=workers.queue) as client:
            handle = await client.enqueue(rel_work, 0.0)
            assert await handle.result(timeout=15) == w.proc.pid
            info = await handle.info()
    finally:
        workers.close()
    assert info.start_ms is not None
    started_after = info.start_ms / 1000 - up_at
    print(f"\nRedis down {DOWN_AT_START_S:g}s at worker start: first job started {started_after:.2f}s after it came up")
    assert started_after < 1.0 + START_MARGIN_S
