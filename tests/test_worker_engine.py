"""The engine's behaviours: no starvation behind another worker's running jobs, priority
order across queues, and interoperation with plain arq workers and clients on one Redis."""

from __future__ import annotations

import asyncio
import uuid
import warnings
from typing import Any

from arq.connections import RedisSettings, create_pool
from arq.worker import Worker as ArqWorker

import asyncjobs
from asyncjobs import JobContext, Settings, keys, worker_settings
from asyncjobs.config import ASYNCJOBS_OPTIONS
from asyncjobs.examples import count_words
from asyncjobs.serialization import deserialize, serialize

GATES: dict[str, asyncio.Event] = {}
RUNS = "test:engine:runs"
ORDER = "test:engine:order"


@asyncjobs.job
async def hold(ctx: JobContext, gate: str) -> str:
    await ctx.redis.incr(f"test:engine:{gate}:started")
    await GATES[gate].wait()
    return "released"


@asyncjobs.job
async def quick(ctx: JobContext, n: int) -> int:
    return n * 2


@asyncjobs.job
async def record_run(ctx: JobContext) -> None:
    await ctx.redis.hincrby(RUNS, ctx.job_id, 1)


@asyncjobs.job
async def record_order(ctx: JobContext, label: str) -> None:
    await ctx.redis.rpush(ORDER, label)


async def wait_until(predicate: Any, timeout: float = 30.0) -> None:
    """Poll an async predicate until true, failing after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await predicate():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


async def test_idle_worker_is_not_starved_by_a_busy_one(client, start_worker, redis_url):
    gate = uuid.uuid4().hex
    GATES[gate] = asyncio.Event()
    functions = [hold, quick]
    a = await start_worker(functions, max_jobs=2)
    long_jobs = [await client.enqueue(hold, gate) for _ in range(2)]

    async def both_started() -> bool:
        return int(await client.redis.get(f"test:engine:{gate}:started") or 0) == 2

    await wait_until(both_started)
    b = await start_worker(functions, max_jobs=10)
    handles = [await client.enqueue(quick, i) for i in range(5)]
    assert [await h.result(timeout=10) for h in handles] == [0, 2, 4, 6, 8]
    assert not GATES[gate].is_set()
    assert [await h.status() for h in long_jobs] == [asyncjobs.JobStatus.IN_PROGRESS] * 2
    assert b.jobs_complete == 5 and a.jobs_complete == 0
    GATES[gate].set()
    assert [await h.result(timeout=10) for h in long_jobs] == ["released"] * 2
    del GATES[gate]


async def test_due_high_priority_jobs_start_before_default_ones(client, start_worker, redis_url):
    for i in range(5):
        await client.enqueue_call("record_order", [f"default{i}"])
    for i in range(5):
        await client.enqueue_call("record_order", [f"high{i}"], queue="high")
    s = Settings(redis_url=redis_url, queues=("high", "default"), concurrency=1, lease=2.0, poll_delay=0.5)
    await start_worker([record_order], settings=s)

    async def all_ran() -> bool:
        return int(await client.redis.llen(ORDER)) == 10

    await wait_until(all_ran)
    order = [x.decode() for x in await client.redis.lrange(ORDER, 0, -1)]
    # within a queue, jobs due in the same millisecond run in id order: compare sets
    assert sorted(order[:5]) == [f"high{i}" for i in range(5)]
    assert sorted(order[5:]) == [f"default{i}" for i in range(5)]


def plain_arq_worker(functions: list[Any], redis_url: str, **overrides: Any) -> ArqWorker:
    """A plain arq Worker built from asyncjobs.worker_settings(...)'s attributes."""
    cls = worker_settings(functions, settings=Settings(redis_url=redis_url))
    attrs = {k: v for k, v in vars(cls).items() if not k.startswith("_") and k not in ASYNCJOBS_OPTIONS}
    return ArqWorker(**{**attrs, "handle_signals": False, **overrides})


async def test_plain_arq_worker_and_engine_share_a_queue_each_job_runs_once(client, start_worker, redis_url):
    n = 10_000
    handles = await client.enqueue_many(asyncjobs.call(record_run) for _ in range(n))
    # burst: the plain worker stops by itself once the queue is empty (cancelling arq's poll
    # loop mid-pipeline would leave a redis-py pipeline unclosed)
    arq_worker = plain_arq_worker([record_run], redis_url, burst=True, poll_delay=0.01)
    arq_task = asyncio.get_running_loop().create_task(arq_worker.async_run())
    try:
        # a lease no loaded test machine outlasts: this test is about sharing the queue; a
        # lapsed lease re-running a job is the lease tests' subject
        ours = await start_worker([record_run], settings=Settings(redis_url=redis_url, lease=15.0, poll_delay=0.5))

        async def all_done() -> bool:
            return (
                int(await client.redis.zcard(keys.queue(keys.DEFAULT_QUEUE))) == 0
                and int(await client.redis.hlen(RUNS)) == n
            )

        await wait_until(all_done, timeout=50)
        runs = await client.redis.hgetall(RUNS)
        assert {k.decode() for k in runs} == {h.id for h in handles if h is not None}
        assert set(runs.values()) == {b"1"}
        async with asyncio.timeout(30):
            await asyncio.shield(arq_task)
        assert ours.jobs_complete + arq_worker.jobs_complete == n
        assert ours.jobs_complete > 0 and arq_worker.jobs_complete > 0, "both workers must take part"
    finally:
        if not arq_task.done():
            arq_task.cancel()
        await asyncio.gather(arq_task, return_exceptions=True)
        with warnings.catch_warnings():  # arq's close() calls redis-py's deprecated close()
            warnings.simplefilter("ignore", DeprecationWarning)
            await arq_worker.close()


async def test_plain_arq_client_job_runs_on_engine_and_its_result_reads_back(start_worker, redis_url):
    await start_worker([count_words], poll_delay=0.2)
    pool = await create_pool(RedisSettings.from_dsn(redis_url), job_serializer=serialize, job_deserializer=deserialize)
    try:
        job = await pool.enqueue_job("count_words", "plain arq enqueued this")  # no wake-up published
        assert job is not None
        assert await job.result(timeout=20, poll_delay=0.05) == 4
    finally:
        await pool.aclose(close_connection_pool=True)


async def test_one_worker_id_owns_the_lease_the_registry_entry_and_the_jobs_it_starts(client, start_worker):
    gate = uuid.uuid4().hex
    GATES[gate] = asyncio.Event()
    worker = await start_worker([hold])
    try:
        handle = await client.enqueue(hold, gate)
        await wait_until(lambda: client.redis.exists(f"test:engine:{gate}:started"))
        owner = (await client.redis.get(keys.in_progress(handle.id))).decode()
        state = await client.redis.hgetall(keys.state(handle.id))
        await wait_until(lambda: client.redis.zscore(keys.WORKERS, worker.worker_id))
        [info] = await client.workers()
    finally:
        GATES[gate].set()
    assert owner == state[b"worker"].decode() == worker.worker_id == info["id"]
    host, pid, _ = worker.worker_id.split(":")  # host:pid stay readable
    assert (host, int(pid)) == (info["host"], info["pid"])
    assert await handle.result(timeout=10) == "released"
