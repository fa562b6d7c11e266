"""Flow control in the claim (real Redis, claims driven directly): concurrency slots taken and
released on every end, parked jobs brought back in order, rate limits that schedule one job
and park the rest, per-key limits, and jobs behind limited ones claimed at once."""

from __future__ import annotations

import json

import pytest
from arq.utils import timestamp_ms
from reliability_support import wait_for

import asyncjobs
from asyncjobs import keys, limits
from asyncjobs.claiming import Claimer
from asyncjobs.errors import ConfigError
from asyncjobs.finishing import Finisher
from asyncjobs.limits import PARKED_SCORE, RateLimit


def table(**entries: dict) -> str:
    return json.dumps(entries)


def claimer(client, queue: str, lim: str, *, lease: float = 30.0, owner: str = "w1") -> Claimer:
    return Claimer(client.redis, [keys.queue(queue)], lease, owner, limits=lim)


async def finish(client, queue: str, job_id: str, *, done: bool = True) -> None:
    await Finisher(client.redis).finish(job_id, keys.queue(queue), done=done, retry_score=timestamp_ms())


async def state(client, job_id: str) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (await client.redis.hgetall(keys.state(job_id))).items()}


def test_rate_limit_specs():
    assert RateLimit.parse("100/m") == RateLimit(100, 60, 1)
    assert RateLimit.parse("10/s", burst=5) == RateLimit(10, 1, 5)
    assert RateLimit.parse("30/5m:3") == RateLimit(30, 300, 3)
    assert RateLimit.parse("2/h").interval_ms == 1_800_000
    for bad in ("100", "0/s", "10/x", "1/0s", ""):
        with pytest.raises(ConfigError, match="rate_limit"):
            RateLimit.parse(bad)
    with pytest.raises(ConfigError, match="burst"):
        RateLimit.parse("1/s:2", burst=3)
    with pytest.raises(ConfigError, match="burst"):
        asyncjobs.job(burst=2)
    with pytest.raises(ConfigError, match="max_concurrency"):
        asyncjobs.job(max_concurrency=0)


async def test_concurrency_slots_park_the_rest_and_every_end_brings_one_back(client, queue_name):
    q = keys.queue(queue_name)
    hs = [await client.enqueue_call("limited", queue=queue_name) for _ in range(5)]
    origin = {h.id: await client.redis.zscore(q, h.id) for h in hs}
    c = claimer(client, queue_name, table(limited={"c": 2}))
    got, _ = await c.claim(10)
    assert [j.job_id for j in got] == [hs[0].id, hs[1].id]
    assert c.moved == 3
    for h in hs[2:]:
        assert await client.redis.zscore(q, h.id) == PARKED_SCORE
        assert (await state(client, h.id))["waiting"] == "at_concurrency"
        assert not await client.redis.exists(keys.in_progress(h.id))
    assert await client.redis.zcard(keys.slots("limited")) == 2

    await finish(client, queue_name, hs[0].id)  # success: the earliest parked job is due again
    assert await client.redis.zscore(q, hs[2].id) == origin[hs[2].id]
    assert "waiting" not in await state(client, hs[2].id)
    assert await client.redis.zscore(q, hs[3].id) == PARKED_SCORE
    await finish(client, queue_name, hs[0].id)  # a finish sent again releases nothing more
    assert await client.redis.zscore(q, hs[3].id) == PARKED_SCORE

    got, _ = await c.claim(10)
    assert [j.job_id for j in got] == [hs[2].id]
    await finish(client, queue_name, hs[1].id, done=False)  # a retry re-queue releases too
    assert await client.redis.zscore(q, hs[3].id) == origin[hs[3].id]

    aborted = await client.job(hs[4].id, queue_name).abort()  # an abort while parked
    assert aborted
    assert not await client.redis.exists(keys.parked("slots:limited"))


async def test_a_lapsed_lease_releases_its_slot(client, queue_name):
    hs = [await client.enqueue_call("limited", queue=queue_name) for _ in range(2)]
    dead = claimer(client, queue_name, table(limited={"c": 1}), lease=0.3, owner="dead")
    got, _ = await dead.claim(10)
    assert [j.job_id for j in got] == [hs[0].id]
    live = claimer(client, queue_name, table(limited={"c": 1}), owner="live")

    async def claimed_second() -> bool:
        got, _ = await live.claim(1)
        return bool(got) and got[0].job_id in (hs[0].id, hs[1].id)

    await wait_for(claimed_second, "the slot to come back after the lease lapsed", timeout=10, interval=0.05)
    holders = await client.redis.zrange(keys.slots("limited"), 0, -1)
    assert len(holders) == 1  # the dead holder is gone, one live holder took its place


async def test_rate_limit_schedules_one_job_parks_the_rest_and_lets_others_through(client, queue_name):
    q = keys.queue(queue_name)
    limited = [await client.enqueue_call("slow_api", queue=queue_name) for _ in range(50)]
    free = await client.enqueue_call("free", queue=queue_name)
    c = claimer(client, queue_name, table(slow_api={"r": [60_000, 0]}))  # one a minute
    got, earliest = await c.claim(10)
    assert [j.job_id for j in got] == [limited[0].id, free.id]  # not blocked behind the 49
    sched = await client.redis.zscore(q, limited[1].id)
    assert sched > timestamp_ms() + 50_000 and earliest <= sched  # the next token: workers wake then
    assert (await state(client, limited[1].id))["waiting"] == "rate_limited"
    for h in limited[2:]:
        assert await client.redis.zscore(q, h.id) == PARKED_SCORE
    assert await client.redis.zcard(keys.parked("rate:slow_api")) == 48
    assert (await client.redis.hget(keys.rate("slow_api"), "sched")).decode() == limited[1].id

    # the scheduled job aborted: the next parked one takes its turn (due at once, then scheduled)
    assert await client.job(limited[1].id, queue_name).abort()
    assert await client.redis.zscore(q, limited[2].id) < timestamp_ms()
    got, _ = await c.claim(10)
    assert got == [] and await client.redis.zscore(q, limited[2].id) > timestamp_ms() + 50_000


async def test_a_burst_starts_together_then_the_rate_holds(client, queue_name):
    hs = [await client.enqueue_call("bursty", queue=queue_name) for _ in range(6)]
    c = claimer(client, queue_name, table(bursty={"r": [60_000, 3 * 60_000]}))  # 1/m, burst 4
    got, _ = await c.claim(10)
    assert [j.job_id for j in got] == [h.id for h in hs[:4]]


async def test_per_key_limits_are_separate_and_vanish_when_idle(client, queue_name):
    @asyncjobs.job(max_concurrency=1, concurrency_key=lambda tenant: tenant, queue=queue_name)
    async def per_tenant(ctx, tenant: str) -> None: ...

    hs = [await client.enqueue(per_tenant, f"t{i % 50}") for i in range(100)]
    c = claimer(client, queue_name, limits.limits_table([per_tenant]))
    got, _ = await c.claim(200)
    assert sorted(j.job_id for j in got) == sorted(h.id for h in hs[:50])  # one per tenant
    assert c.moved == 50
    for j in got:
        await finish(client, queue_name, j.job_id)
    got, _ = await c.claim(200)
    assert sorted(j.job_id for j in got) == sorted(h.id for h in hs[50:])
    for j in got:
        await finish(client, queue_name, j.job_id)
    assert await client.redis.keys("asyncjobs:slots:*") == []
    assert await client.redis.keys("asyncjobs:parked:*") == []
    # an explicit key overrides the key function
    h = await client.enqueue(per_tenant.options(concurrency_key="vip"), "t1")
    (j,), _ = await c.claim(10)
    assert j.job_id == h.id
    assert await client.redis.zrange(keys.slots("per_tenant#vip"), 0, -1) == [h.id.encode()]


def test_a_rate_above_1000_per_second_is_not_capped_by_the_ms_clock():
    @asyncjobs.job(rate_limit="5000/s")
    async def fast(ctx) -> None: ...

    interval, tolerance = json.loads(limits.limits_table([fast]))["fast"]["r"]
    assert interval == pytest.approx(0.2)
    assert tolerance == pytest.approx(0.8)  # five starts within one ms of the claim clock
