"""Dedupe, debounce and throttle (``asyncjobs.flow``) against a real redis-server: decided in
the enqueue script, the windows' keys expiring with them, and real worker runs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from arq.utils import timestamp_ms

import asyncjobs
from asyncjobs import ConfigError, JobStatus, job, keys
from asyncjobs.flow import DEBOUNCE, DEDUPE, THROTTLE, Flow, arguments_hash, flow_options
from asyncjobs.registry import EnqueueOptions

DEADLINE_S = 20.0


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def wait_gone(redis: Any, key: str) -> None:
    """Poll (bounded) until ``key`` has expired: the window is over."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while await redis.exists(key):
        assert loop.time() < deadline, f"{key} did not expire"
        await asyncio.sleep(0.05)


def recorder(name: str) -> tuple[Any, list[tuple[Any, ...]]]:
    calls: list[tuple[Any, ...]] = []

    @job(name=name)
    async def record(ctx: Any, *args: Any) -> int:
        calls.append((ctx.job_id, timestamp_ms(), *args))
        return len(args)

    return record, calls


# windows are seconds long: margins for a loaded machine (consecutive enqueues must land in one)


# --- options, checked once ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"dedupe_for": 5, "throttle": 5}, "use one of dedupe_for, debounce and throttle, not dedupe_for and throttle"),
        ({"debounce": 1, "dedupe_for": 2}, "not dedupe_for and debounce"),
        ({"dedupe_key": "k"}, "dedupe_key needs dedupe_for=seconds"),
        ({"throttle_key": "k"}, "throttle_key needs throttle=seconds"),
        ({"throttle_key": "k", "dedupe_for": 3}, "throttle_key needs throttle=seconds"),
        ({"dedupe_for": 0}, "dedupe_for 0 is not a window"),
        ({"debounce": -1}, "debounce -1 is not a window"),
        ({"throttle": True}, "throttle True is not a window"),
        ({"dedupe_for": 400 * 86400}, "at most 366 days"),
        ({"dedupe_for": 5, "dedupe_key": ""}, "dedupe_key '' is not valid"),
        ({"throttle": 5, "throttle_key": 7}, "throttle_key 7 is not valid"),
    ],
)
def test_flow_options_refuse_what_does_not_fit(given: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        flow_options(**given)


def test_flow_options_build_one_flow() -> None:
    assert flow_options() is None
    assert flow_options(dedupe_for=60) == Flow(DEDUPE, 60.0, None)
    assert flow_options(dedupe_for=1.5, dedupe_key="k") == Flow(DEDUPE, 1.5, "k")
    assert flow_options(debounce=5, dedupe_key="u1") == Flow(DEBOUNCE, 5.0, "u1")
    assert flow_options(throttle=60) == Flow(THROTTLE, 60.0, None)


def test_debounce_is_a_deferral_of_its_own() -> None:
    flow = flow_options(debounce=2)
    with pytest.raises(ConfigError, match="debounce defers the job itself"):
        EnqueueOptions(defer_by=5, flow=flow)
    with pytest.raises(ConfigError, match="debounce defers the job itself"):
        EnqueueOptions(priority=3, flow=flow)
    assert EnqueueOptions(flow=flow).score(1_000) == (3_000, 3_000)
    assert EnqueueOptions(flow=flow_options(dedupe_for=2)).score(1_000) == (1_000, 1_000)


def test_the_arguments_hash_is_canonical() -> None:
    assert arguments_hash("f", [1], {"a": 1, "b": 2}) == arguments_hash("f", (1,), {"b": 2, "a": 1})
    assert arguments_hash("f", [1], {}) != arguments_hash("f", [2], {})
    assert arguments_hash("f", [1], {}) != arguments_hash("g", [1], {})


# --- dedupe ------------------------------------------------------------------------------------
async def test_dedupe_by_key_returns_the_job_within_its_window_and_a_new_one_after(client) -> None:
    fn, _ = recorder(unique("dd"))
    first = await client.enqueue(fn.options(dedupe_for=2, dedupe_key="order-1"), 1)
    again = await client.enqueue(fn.options(dedupe_for=2, dedupe_key="order-1"), 2)  # other args, same key
    other = await client.enqueue(fn.options(dedupe_for=2, dedupe_key="order-2"), 1)
    assert first.admission == "created" and not first.deduplicated
    assert again.id == first.id and again.deduplicated
    assert other.id != first.id and not other.deduplicated
    assert (await again.info()).args == [1]  # dedupe keeps the first job as it was
    key = keys.flow(DEDUPE, fn.name, "k:order-1")
    assert 0 < await client.redis.pttl(key) <= 2000  # the window expires with itself: bounded memory
    await wait_gone(client.redis, key)
    after = await client.enqueue(fn.options(dedupe_for=2, dedupe_key="order-1"), 3)
    assert after.id != first.id and not after.deduplicated


async def test_dedupe_window_runs_from_the_enqueue_not_until_the_job_ends(client, start_worker) -> None:
    """A job that ended still holds the window (same handle back); one still waiting when the
    window ends no longer does (a new job)."""
    fn, calls = recorder(unique("ddend"))
    await start_worker([fn])
    first = await client.enqueue(fn.options(dedupe_for=30), "x")
    assert await first.result(timeout=DEADLINE_S) == 1
    again = await client.enqueue(fn.options(dedupe_for=30), "x")
    assert again.deduplicated and again.id == first.id and len(calls) == 1

    waiting = await client.enqueue(fn.options(dedupe_for=0.3, defer_by=60), "y")
    await wait_gone(client.redis, keys.flow(DEDUPE, fn.name, "h:" + arguments_hash(fn.name, ["y"], {})))
    assert await waiting.status() is JobStatus.DEFERRED
    second = await client.enqueue(fn.options(dedupe_for=0.3, defer_by=60), "y")
    assert second.id != waiting.id and not second.deduplicated


async def test_dedupe_by_argument_hash(client) -> None:
    fn, _ = recorder(unique("ddh"))

    @job(name=unique("kw"))
    async def kw(ctx: Any, a: int, *, b: int = 0, c: int = 0) -> int:
        return a + b + c

    a = await client.enqueue(fn.options(dedupe_for=30), 1, 2)
    b = await client.enqueue(fn.options(dedupe_for=30), 1, 2)
    c = await client.enqueue(fn.options(dedupe_for=30), 2, 1)
    assert b.id == a.id and b.deduplicated and c.id != a.id
    k1 = await client.enqueue(kw.options(dedupe_for=30), 1, b=2, c=3)
    k2 = await client.enqueue(kw.options(dedupe_for=30), 1, c=3, b=2)  # same call, other keyword order
    assert k2.id == k1.id and k2.deduplicated
    by_name = await client.enqueue_call(kw.name, [1], {"c": 3, "b": 2}, dedupe_for=30)
    assert by_name.id == k1.id and by_name.deduplicated


async def test_concurrent_enqueues_on_separate_connections_create_one_job(redis_url, queue_name) -> None:
    fn, _ = recorder(unique("race"))
    clients = [asyncjobs.connect(redis_url) for _ in range(5)]
    for c in clients:
        await c.open()
    try:
        placed = fn.options(dedupe_for=30, dedupe_key="once", queue=queue_name)
        handles = await asyncio.gather(*(clients[i % 5].enqueue(placed, i) for i in range(50)))
        assert len({h.id for h in handles}) == 1
        assert [h.admission for h in handles].count("created") == 1
        assert sum(h.deduplicated for h in handles) == 49
        assert await clients[0].redis.zcard(keys.queue(queue_name)) == 1
    finally:
        for c in clients:
            await c.close()


RACER = """
import asyncio, json, sys
import asyncjobs

async def main(url, queue, key):
    async with asyncjobs.connect(url) as c:
        hs = await asyncio.gather(*(c.enqueue_call("count_words", [str(i)], queue=queue, dedupe_for=30,
                                                   dedupe_key=key) for i in range(25)))
        print(json.dumps([[h.id, h.admission] for h in hs]))

asyncio.run(main(*sys.argv[1:]))
"""


async def test_two_client_processes_racing_create_one_job(redis_url, queue_name, client) -> None:
    key = unique("k")
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", RACER, redis_url, queue_name, key, stdout=subprocess.PIPE
        )
        for _ in range(2)
    ]
    outs = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), DEADLINE_S * 2)
    assert [p.returncode for p in procs] == [0, 0]
    answers = [a for out, _ in outs for a in json.loads(out)]
    assert len(answers) == 50 and len({i for i, _ in answers}) == 1
    assert [adm for _, adm in answers].count("created") == 1
    assert await client.redis.zcard(keys.queue(queue_name)) == 1


async def test_enqueue_many_honours_dedupe_and_keeps_order(client) -> None:
    fn, _ = recorder(unique("many"))
    held = await client.enqueue(fn.options(dedupe_for=30, dedupe_key="held"), 0)
    out = await client.enqueue_many(
        [
            asyncjobs.call(fn, 1),
            asyncjobs.call(fn.options(dedupe_for=30, dedupe_key="held"), 2),
            asyncjobs.call(fn, 3),
            asyncjobs.call(fn.options(dedupe_for=30, dedupe_key="new"), 4),
            asyncjobs.call(fn.options(dedupe_for=30, dedupe_key="new"), 5),
            asyncjobs.call(fn.options(job_id=held.id), 6),  # the id is taken: None, as before
        ]
    )
    assert out[5] is None
    handles = [h for h in out if h is not None]
    assert [h.admission for h in handles] == ["created", "deduplicated", "created", "created", "deduplicated"]
    assert handles[1].id == held.id and handles[4].id == handles[3].id
    assert [(await h.info()).args for h in handles] == [[1], [0], [3], [4], [4]]


# --- debounce ----------------------------------------------------------------------------------
async def test_debounce_replaces_the_arguments_and_runs_once_after_the_last_enqueue(client, start_worker) -> None:
    fn, calls = recorder(unique("deb"))
    await start_worker([fn])
    window = 2.0
    placed = fn.options(debounce=window, dedupe_key="user-7")
    first = await client.enqueue(placed, "v1")
    second = await client.enqueue(placed, "v2")
    last_enqueue_ms = timestamp_ms()
    third = await client.enqueue(placed, "v3")
    assert first.admission == "created" and second.debounced and third.debounced
    assert first.id == second.id == third.id
    rec = await third.info()
    assert rec.status is JobStatus.DEFERRED and rec.args == ["v3"]
    assert rec.scheduled_ms is not None and rec.scheduled_ms >= last_enqueue_ms + window * 1000
    assert await first.result(timeout=DEADLINE_S) == 1
    assert len(calls) == 1
    job_id, started_ms, arg = calls[0]
    assert (job_id, arg) == (first.id, "v3")
    assert started_ms >= last_enqueue_ms + window * 1000  # not before the last enqueue + window
    # the job has run: the next enqueue starts a new one
    later = await client.enqueue(placed, "v4")
    assert later.admission == "created" and later.id != first.id
    assert await later.result(timeout=DEADLINE_S) == 1
    assert [c[2] for c in calls] == ["v3", "v4"]


async def test_debounce_after_the_job_started_enqueues_a_new_one(client, start_worker) -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @job(name=unique("slow"))
    async def slow(ctx: Any, n: int) -> int:
        started.set()
        await release.wait()
        return n

    await start_worker([slow])
    placed = slow.options(debounce=2)  # no key: one pending job per function
    first = await client.enqueue(placed, 1)
    await asyncio.wait_for(started.wait(), DEADLINE_S)
    second = await client.enqueue(placed, 2)
    assert second.admission == "created" and second.id != first.id
    third = await client.enqueue(placed, 3)
    assert third.debounced and third.id == second.id  # the new one waits: it is debounced
    release.set()
    assert await first.result(timeout=DEADLINE_S) == 1
    assert await second.result(timeout=DEADLINE_S) == 3


# --- throttle ----------------------------------------------------------------------------------
async def test_throttle_drops_extras_within_the_window_and_allows_one_in_the_next(client, start_worker) -> None:
    fn, calls = recorder(unique("thr"))
    await start_worker([fn])
    placed = fn.options(throttle=2, throttle_key="tenant-1")
    handles = [await client.enqueue(placed, i) for i in range(5)]
    holder = handles[0]
    assert holder.admission == "created" and not holder.throttled
    assert all(h.throttled and h.id == holder.id for h in handles[1:])
    other_key = await client.enqueue(fn.options(throttle=2, throttle_key="tenant-2"), 99)
    assert other_key.admission == "created"
    await wait_gone(client.redis, keys.flow(THROTTLE, fn.name, "k:tenant-1"))
    nxt = await client.enqueue(placed, 5)
    assert nxt.admission == "created" and nxt.id != holder.id
    for h in (holder, other_key, nxt):
        await h.result(timeout=DEADLINE_S)
    assert sorted(c[2] for c in calls) == [0, 5, 99]  # 1-4 were dropped


async def test_throttle_without_a_key_is_per_function(client) -> None:
    fn, _ = recorder(unique("thf"))
    a = await client.enqueue(fn.options(throttle=30), 1)
    b = await client.enqueue_call(fn.name, [2], throttle=30)
    assert b.throttled and b.id == a.id
    assert await client.redis.exists(keys.flow(THROTTLE, fn.name, "*"))


@pytest.mark.own_redis  # SCRIPT FLUSH concerns the whole server
async def test_a_flushed_script_is_loaded_again_on_the_line_and_through_the_pool(client) -> None:
    fn, _ = recorder(unique("flush"))
    placed = fn.options(dedupe_for=30, dedupe_key="k")
    first = await client.enqueue(placed, 1)
    await client.redis.script_flush()
    assert (await client.enqueue(placed, 2)).deduplicated  # on the enqueue line
    await client.redis.script_flush()
    line, client.redis._line = client.redis._line, None
    try:
        again = await client.enqueue(placed, 3)  # through the pool
    finally:
        client.redis._line = line
    assert again.deduplicated and again.id == first.id


async def test_the_flow_script_runs_on_the_in_memory_broker() -> None:
    fn, _ = recorder(unique("mem"))
    async with asyncjobs.connect(f"memory://{uuid.uuid4().hex}") as c:
        first = await c.enqueue(fn.options(dedupe_for=30), 1)
        assert (await c.enqueue(fn.options(dedupe_for=30), 1)).id == first.id
        assert (await c.enqueue(fn.options(throttle=30), 1)).admission == "created"
        assert (await c.enqueue(fn.options(throttle=30), 2)).throttled
        pending = await c.enqueue(fn.options(debounce=30), 1)
        assert (await c.enqueue(fn.options(debounce=30), 2)).debounced
        assert (await pending.info()).args == [2]
