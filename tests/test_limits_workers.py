"""Flow control with 3 worker processes on one Redis: a concurrency limit is never exceeded
and is reached; a kill -9 frees the slot within lease + 2 s; no second holds more starts than
a rate limit allows; an unlimited job behind 10,000 rate-limited ones starts at once; per-key
limits over many keys leave no keys behind."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid

import pytest
from limits_app import flow_capped, flow_free, flow_rated, flow_single, flow_tenant
from reliability_app import read_timeline
from reliability_support import Workers, wait_for

import asyncjobs
from asyncjobs import keys

LEASE_S = 2.0


@pytest.fixture
def flow_workers(rel_workers: Workers) -> Workers:
    rel_workers.settings = "limits_app.WorkerSettings"
    queues = f"{rel_workers.queue},{rel_workers.queue}b"  # a second queue, for the pause test
    for _ in range(3):
        rel_workers.start(ASYNCJOBS_LEASE=str(LEASE_S), ASYNCJOBS_CONCURRENCY="10", ASYNCJOBS_QUEUES=queues)
    return rel_workers


async def results(handles, timeout: float = 90.0) -> list:
    return await asyncio.gather(*(h.result(timeout=timeout) for h in handles))


async def test_max_concurrency_is_never_exceeded_and_is_reached(flow_workers):
    group = uuid.uuid4().hex
    async with asyncjobs.connect(flow_workers.redis_url, default_queue=flow_workers.queue) as client:
        handles = [await client.enqueue(flow_capped, group, 0.2) for _ in range(30)]
        await results(handles)
        peak = int(await client.redis.get(f"flowtest:{group}:max"))
        live = int(await client.redis.get(f"flowtest:{group}:live"))
        leftovers = await client.redis.keys("asyncjobs:slots:*") + await client.redis.keys("asyncjobs:parked:*")
    assert peak == 3
    assert live == 0
    assert leftovers == []
    assert not any("plain arq workers serve" in p.output() for p in flow_workers.procs)  # none here


async def test_kill_9_of_the_worker_holding_a_slot_frees_it_within_the_lease(flow_workers):
    async with asyncjobs.connect(flow_workers.redis_url, default_queue=flow_workers.queue) as client:
        first = await client.enqueue(flow_single, 60.0)
        starts = await wait_for(lambda: read_timeline(flow_workers.runlog), "the first job to start")
        waiting = [await client.enqueue(flow_single, 0.05) for _ in range(2)]
        await wait_for(lambda: _all_parked(client, waiting), "the other jobs to be parked")
        holder = next(p for p in flow_workers.procs if p.proc.pid == starts[0][2])
        holder.signal(signal.SIGKILL)
        killed_at = time.time()
        holder.proc.wait(10)
        second = await wait_for(
            lambda: (t := read_timeline(flow_workers.runlog)) and len(t) >= 2 and t[1], "a job to take the slot"
        )
        await results([first, *waiting])
        timeline = read_timeline(flow_workers.runlog)
    recovery = second[3] - killed_at
    print(f"\nkill -9 of a slot holder: slot taken again {recovery:.2f}s after the kill (lease {LEASE_S:g}s)")
    assert recovery < LEASE_S + 2.0
    assert len(timeline) == 4  # the killed job ran again, the two others once
    starts_by_pid = {}
    for _, _, pid, t, _ in timeline:
        starts_by_pid.setdefault(pid, []).append(t)
    assert holder.proc.pid not in {pid for _, _, pid, t, _ in timeline if t > killed_at}


async def _all_parked(client, handles) -> bool:
    for h in handles:
        if (await client.redis.hget(keys.state(h.id), "waiting")) != b"at_concurrency":
            return False
    return True


async def test_no_second_holds_more_starts_than_the_rate(flow_workers):
    group = uuid.uuid4().hex
    async with asyncjobs.connect(flow_workers.redis_url, default_queue=flow_workers.queue) as client:
        handles = await client.enqueue_many(asyncjobs.call(flow_rated, group) for _ in range(25))
        await results(handles)
        claims = sorted(int(c) for c in await client.redis.lrange(f"flowtest:{group}:claims", 0, -1))
    assert len(claims) == 25
    # 5/s: any 6 consecutive claims span at least a second, so no 1-second window holds 6
    assert all(claims[i + 5] - claims[i] >= 1000 for i in range(len(claims) - 5)), claims
    assert claims[-1] - claims[0] >= 24 * 200


async def test_an_unlimited_job_behind_10000_rate_limited_ones_starts_at_once(flow_workers):
    group = uuid.uuid4().hex
    async with asyncjobs.connect(flow_workers.redis_url, default_queue=flow_workers.queue) as client:
        await client.enqueue_many(asyncjobs.call(flow_rated, group) for _ in range(10_000))
        enqueued = time.time()
        free = await client.enqueue(flow_free, group)
        started = await free.result(timeout=60)
        parked = await client.redis.zcard(keys.parked("rate:flow_rated"))
    waited = started - enqueued
    print(f"\nan unlimited job behind 10,000 rate-limited ones started after {waited:.3f}s")
    # blocked behind them, it would wait 10,000 / 5 per second: over half an hour
    assert waited < 30.0
    assert parked > 9_000


async def test_per_key_limits_over_many_keys(flow_workers):
    tenants = [f"tenant-{uuid.uuid4().hex[:6]}-{i}" for i in range(300)]
    async with asyncjobs.connect(flow_workers.redis_url, default_queue=flow_workers.queue) as client:
        handles = await client.enqueue_many(asyncjobs.call(flow_tenant, t, 0.05) for t in tenants * 3)
        await results(handles, timeout=120)
        peaks = await client.redis.mget([f"flowtest:{t}:max" for t in tenants])
        slots = await client.redis.keys("asyncjobs:slots:*") + await client.redis.keys("asyncjobs:parked:*")
        rate_keys = await client.redis.keys("asyncjobs:rate:*")
        ttls = [await client.redis.pttl(k) for k in rate_keys]
    assert {int(p) for p in peaks} == {1}  # each tenant ran one job at a time
    assert slots == []  # holders and parked sets of idle keys are gone
    assert len(rate_keys) == 300 and all(0 < t <= 61_000 for t in ttls)  # rate buckets expire when idle


async def test_pause_and_resume_a_queue_and_a_function(flow_workers):
    group, other = uuid.uuid4().hex, flow_workers.queue + "b"
    async with asyncjobs.connect(flow_workers.redis_url, default_queue=flow_workers.queue) as client:
        await client.pause(queue=flow_workers.queue)
        held = await client.enqueue(flow_free, group)
        # a job enqueued after it on another queue runs: the workers claimed since, and passed it by
        await (await client.enqueue(flow_free.options(queue=other), group)).result(timeout=30)
        info = await held.info()
        assert info.status is asyncjobs.JobStatus.QUEUED and info.waiting == "paused"
        (stats,) = await client.queue_stats([flow_workers.queue])
        assert stats.paused and stats.queued == 1
        await client.resume(queue=flow_workers.queue)
        await held.result(timeout=30)

        await client.pause(function="flow_free")
        parked = [await client.enqueue(flow_free, group) for _ in range(3)]
        await (await client.enqueue(flow_capped, group, 0.0)).result(timeout=30)  # enqueued behind them, ran
        for h in parked:
            info = await h.info()
            assert info.status is asyncjobs.JobStatus.QUEUED and info.waiting == "paused"
        (state,) = [s for s in await client.limits() if s.function == "flow_free"]
        assert state.paused and state.paused_jobs == 3
        await client.resume(function="flow_free")
        await results(parked, timeout=30)
        assert await client.redis.keys("asyncjobs:parked:*") == []


async def test_asyncjobs_worker_warns_when_plain_arq_workers_serve_a_limited_queue(rel_workers):
    rel_workers.settings = "limits_app.WorkerSettings"
    arq = rel_workers.start("arq")
    async with asyncjobs.connect(rel_workers.redis_url) as client:
        line = await wait_for(lambda: client.redis.get(keys.health_check(rel_workers.queue)), "arq's health line")
    ours = rel_workers.start()
    await wait_for(lambda: "plain arq workers serve" in ours.output(), "the warning", timeout=60)
    assert rel_workers.queue in ours.output()
    assert b"engine=asyncjobs" not in line
    assert "plain arq workers serve" not in arq.output()
