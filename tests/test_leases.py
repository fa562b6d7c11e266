"""Lease renewal from a thread: a job that blocks its worker's event loop keeps its lease (and
is named in a warning), a renewal never brings back a finished job's lease, and the thread
stops on close."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid

import redis as sync_redis
from reliability_app import read_runs, rel_block_loop
from reliability_support import wait_for

import asyncjobs
from asyncjobs import keys
from asyncjobs.connections import create_broker
from asyncjobs.examples import count_words
from asyncjobs.leases import LeaseKeeper

LEASE_S = 2.0  # the fault workers' lease (reliability_support.Workers)


async def test_a_job_blocking_the_event_loop_past_its_lease_runs_once_and_is_named(rel_workers):
    a, b = rel_workers.start(), rel_workers.start()
    async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:

        async def both_registered() -> bool:
            pids = {w["pid"] for w in await client.workers()}
            return {a.proc.pid, b.proc.pid} <= pids

        await wait_for(both_registered, "both workers to register")
        handle = await client.enqueue(rel_block_loop, LEASE_S * 1.6)
        result = await handle.result(timeout=30)
        info = await handle.info()
    runs = [r for r in read_runs(rel_workers.runlog) if r[0] == handle.id]
    runner = a if runs[0][2] == a.proc.pid else b
    warned = await wait_for(
        lambda: next((ln for ln in runner.output().splitlines() if "event loop blocked" in ln), None),
        "the blocked-loop warning",
        timeout=10,
    )
    print(f"\nblocked loop: {len(runs)} run(s) of a {LEASE_S * 1.6:g}s block (lease {LEASE_S:g}s); {warned}")
    assert runs == [(handle.id, 1, runner.proc.pid)], runs  # never taken by the other worker
    assert result == f"done by {runner.proc.pid}" and info.tries == 1
    assert handle.id in warned


async def test_renewal_extends_only_live_markers_of_its_owner_and_never_resurrects(redis_url):
    broker = create_broker(redis_url)
    r = sync_redis.Redis.from_url(redis_url)
    q = keys.queue("lease" + uuid.uuid4().hex[:8])
    mine, finished, stolen = (uuid.uuid4().hex for _ in range(3))
    keeper = LeaseKeeper(lease_s=LEASE_S)
    try:
        for job_id, owner in ((mine, "me"), (finished, "me"), (stolen, "other")):
            r.set(keys.in_progress(job_id), owner, px=500)
            r.zadd(q, {job_id: 1})
            r.zadd(keys.leases(q), {job_id: 1})
            keeper.add(job_id, q)
        r.delete(keys.in_progress(finished))  # FINISH ran between the thread's snapshot and its call
        keeper.start(broker, "me")
        before = time.time() * 1000
        assert keeper.renew() == 1
        assert r.pttl(keys.in_progress(mine)) > 1500
        assert r.zscore(q, mine) >= before + LEASE_S * 1000 - 1 and r.zscore(keys.leases(q), mine) == r.zscore(q, mine)
        assert not r.exists(keys.in_progress(finished)) and r.zscore(q, finished) == 1
        assert r.get(keys.in_progress(stolen)) == b"other" and r.pttl(keys.in_progress(stolen)) <= 500
        assert r.zscore(q, stolen) == 1
        keeper.discard(mine)
        keeper.discard(finished)
        keeper.discard(stolen)
        assert keeper.renew() == 0
        thread = keeper._thread
        keeper.stop()
        assert thread is not None and not thread.is_alive()
    finally:
        keeper.stop()
        r.delete(q, keys.leases(q), *(keys.in_progress(j) for j in (mine, finished, stolen)))
        r.close()
        await broker.aclose(close_connection_pool=True)


def lease_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("asyncjobs-leases-")]


async def test_every_way_a_job_ends_drops_its_lease_and_close_stops_the_thread(client, start_worker):
    before = set(lease_threads())
    worker = await start_worker([count_words])
    await wait_for(lambda: set(lease_threads()) - before, "the lease thread to start")
    done = await client.enqueue(count_words, "a b c")
    unknown = await client.enqueue_call("no_such_function")  # fails before it runs
    assert await done.result(timeout=10) == 3
    await wait_for(lambda: _failed(unknown), "the early failure", timeout=10)
    q = keys.queue(keys.DEFAULT_QUEUE)
    assert await client.redis.zscore(keys.leases(q), done.id) is None
    assert await client.redis.zscore(keys.leases(q), unknown.id) is None
    assert not worker.leases._running_ids()
    await worker.close()
    assert set(lease_threads()) <= before


async def _failed(handle) -> bool:
    return (await handle.status()) is asyncjobs.JobStatus.FAILED


async def test_a_job_task_that_ends_drops_only_its_own_runs_lease() -> None:
    keeper = LeaseKeeper(lease_s=LEASE_S)
    loop = asyncio.get_running_loop()
    first, second = loop.create_future(), loop.create_future()  # stand-ins for two runs' tasks
    keeper.add("job-1", "q", first)
    keeper.add("job-1", "q", second)  # a retry of the same id taken again by this worker
    keeper.discard("job-1", first)  # the first run's task ends after that
    assert keeper._running_ids() == ["job-1"]  # the new run is still renewed
    keeper.discard("job-1", second)
    assert keeper._running_ids() == []
