"""``asyncjobs.Worker`` as a drop-in for ``arq.worker.Worker``: each test drives a worker the way
an arq user's code does (arq's ``create_pool`` with arq's default pickle serializer, arq's
``enqueue_job`` options, ``Retry``, ``Job.abort``, ``Job.result``, settings classes) and asserts
arq's documented outcome, against both Worker classes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from typing import Any

import arq.worker
import pytest
from arq.connections import ArqRedis, RedisSettings, create_pool
from arq.constants import default_queue_name, job_key_prefix
from arq.jobs import Job, JobStatus
from arq.worker import Retry

import asyncjobs
from asyncjobs import deadletter, keys
from asyncjobs.connections import create_broker
from asyncjobs.serialization import deserialize, serialize
from tests.conftest import ROOT

WORKERS = [pytest.param(arq.worker.Worker, id="arq"), pytest.param(asyncjobs.Worker, id="asyncjobs")]


@pytest.fixture
async def pool(redis_url: str) -> AsyncIterator[ArqRedis]:
    """An arq client pool as an arq user makes it: arq's defaults, pickle included."""
    p = await create_pool(RedisSettings.from_dsn(redis_url))
    yield p
    await p.aclose(close_connection_pool=True)


@pytest.fixture
async def make_worker(redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    """``make_worker(cls, functions, **options)``: a worker of either class with its own arq pool
    (or none, with ``own_pool=False``: it builds one from ``redis_settings``); closed at teardown."""
    made: list[Any] = []

    async def make(cls: Any, functions: list[Any], *, own_pool: bool = True, **options: Any) -> Any:
        if own_pool:
            options["redis_pool"] = await create_pool(RedisSettings.from_dsn(redis_url))
        else:
            options["redis_settings"] = RedisSettings.from_dsn(redis_url)
        w = cls(functions=functions, handle_signals=False, **options)
        made.append(w)
        return w

    yield make
    for w in made:
        if isinstance(w, asyncjobs.Worker):
            await w.close()
        elif w._pool is not None:  # arq's own close() calls redis-py's deprecated close()
            await w._pool.aclose(close_connection_pool=True)


async def run_burst(w: Any, timeout: float = 30) -> Any:
    async with asyncio.timeout(timeout):
        await w.main()
    return w


async def good(ctx: dict[str, Any]) -> str:
    return "ok"


async def foobar(ctx: dict[str, Any]) -> int:
    return 42


# --- a job that fails before it runs ---------------------------------------------------------


async def _unknown_function(pool: ArqRedis) -> None:
    await pool.enqueue_job("no_such_function", _job_id="bad-1")


async def _max_tries(pool: ArqRedis) -> None:
    await pool.enqueue_job("good", _job_id="bad-1", _job_try=99)


async def _undecodable(pool: ArqRedis) -> None:
    await pool.set(job_key_prefix + "bad-1", b"\x00 not a payload")
    await pool.zadd(default_queue_name, {"bad-1": 1})


async def _expired(pool: ArqRedis) -> None:
    await pool.zadd(default_queue_name, {"bad-1": 1})


async def _aborted_before_start(pool: ArqRedis) -> None:
    await pool.enqueue_job("good", _job_id="bad-1")
    await pool.zadd(keys.ARQ_ABORT, {"bad-1": 1})


EARLY_FAILURES = {  # how arq fails each: the result's exception type and message
    "unknown-function": (_unknown_function, "JobExecutionFailed", "function 'no_such_function' not found"),
    "max-tries": (_max_tries, "JobExecutionFailed", "max 5 retries exceeded"),
    "undecodable": (_undecodable, "DeserializationError", "unable to deserialize job"),
    "expired": (_expired, "JobExecutionFailed", "job expired"),
    "aborted": (_aborted_before_start, "CancelledError", ""),
}


@pytest.mark.parametrize("path", list(EARLY_FAILURES))
@pytest.mark.parametrize("cls", WORKERS)
async def test_a_job_failing_before_it_runs_fails_alone_under_arqs_pickle(cls, path, pool, make_worker):
    setup, error_type, message = EARLY_FAILURES[path]
    await setup(pool)
    await pool.enqueue_job("good", _job_id="good-1")
    w = await run_burst(await make_worker(cls, [good], burst=True, poll_delay=0.1, allow_abort_jobs=True))
    assert (w.jobs_complete, w.jobs_failed) == (1, 1)
    assert await Job("good-1", pool).result(timeout=1) == "ok"
    bad = await Job("bad-1", pool).result_info()
    assert bad is not None and not bad.success
    assert (type(bad.result).__name__, str(bad.result)) == (error_type, message)
    assert await pool.zcard(default_queue_name) == 0
    assert not await pool.exists(keys.in_progress("bad-1"))


async def test_the_engine_dead_letters_an_early_failure_it_decoded_with_pickle(pool, make_worker):
    await pool.enqueue_job("no_such_function", 1, x="y", _job_id="bad-1")
    await run_burst(await make_worker(asyncjobs.Worker, [good], burst=True, poll_delay=0.1))
    entry = await deadletter.get(pool, "bad-1")
    assert (entry.function, entry.args, entry.kwargs, entry.tries) == ("no_such_function", [1], {"x": "y"}, 1)
    assert entry.error["message"] == "function 'no_such_function' not found"
    assert entry.queue == keys.DEFAULT_QUEUE and entry.raw is None


async def test_an_undecodable_payload_is_dead_lettered_with_its_bytes(pool, make_worker):
    await _undecodable(pool)
    await run_burst(await make_worker(asyncjobs.Worker, [good], burst=True, poll_delay=0.1))
    entry = await deadletter.get(pool, "bad-1")
    assert entry.raw == b"\x00 not a payload" and entry.function == "<unknown>"


# --- any queue name -----------------------------------------------------------------------------


@pytest.mark.parametrize("queue", ["custom_queue", "arq:queue1", "arq:queue:x", "arq:queue"])
@pytest.mark.parametrize("cls", WORKERS)
async def test_a_worker_listens_on_the_exact_queue_key_it_is_given(cls, queue, pool, make_worker):
    j = await pool.enqueue_job("foobar", _queue_name=queue)
    assert j is not None
    w = await run_burst(await make_worker(cls, [foobar], queue_name=queue, burst=True, poll_delay=0.1))
    assert (w.queue_name, w.jobs_complete) == (queue, 1)
    assert await j.status() is JobStatus.complete and await j.result(timeout=1) == 42


@pytest.mark.parametrize("cls", WORKERS)
async def test_a_worker_without_queue_name_listens_on_its_pools_default_queue(cls, redis_url, make_worker):
    pool = await create_pool(RedisSettings.from_dsn(redis_url), default_queue_name="team_jobs")
    try:
        j = await pool.enqueue_job("foobar")
        assert j is not None
        w = cls(functions=[foobar], redis_pool=pool, queue_name=None, burst=True, poll_delay=0.1, handle_signals=False)
        try:
            await run_burst(w)
            assert (w.queue_name, w.jobs_complete, await j.status()) == ("team_jobs", 1, JobStatus.complete)
        finally:
            if isinstance(w, asyncjobs.Worker):
                await w.close()
    finally:
        await pool.aclose(close_connection_pool=True)


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("arq:queue", "default"),
        ("arq:queue:high", "high"),
        ("custom_queue", ":custom_queue"),
        ("arq:queue1", "arq:queue1"),
        ("arq:queue:default", "arq:queue:default"),
        ("arq:queue:a:b", "arq:queue:a:b"),
        (":odd", "::odd"),
    ],
)
def test_queue_names_and_keys_map_both_ways(key, name):
    assert keys.queue_name_of(key) == name
    assert keys.queue(name) == key


async def test_the_engine_wakes_counts_and_dead_letters_on_a_custom_queue_key(redis_url, pool, make_worker):
    """Wake-up signals, outcome counts and dead letters use the name of the key the worker
    listens on; the name maps back to that key (for dead-letter retry and queue stats)."""
    codec = {"job_serializer": serialize, "job_deserializer": deserialize}  # the broker's
    w = await make_worker(asyncjobs.Worker, [foobar], queue_name="custom_queue", poll_delay=30, **codec)
    task = asyncio.get_running_loop().create_task(w.main())
    broker = create_broker(redis_url)
    try:
        await _until(lambda: _subscribed(pool, keys.wake(":custom_queue")))
        j = await broker.enqueue_job("foobar", _queue_name="custom_queue")  # publishes a wake-up
        assert j is not None
        assert await j.result(timeout=10, poll_delay=0.02) == 42  # long before the 30 s poll
        await broker.enqueue_job("no_such_function", _queue_name="custom_queue", _job_id="bad-1")
        await _until(lambda: pool.exists(keys.dead("bad-1")))
        assert keys.queue((await deadletter.get(pool, "bad-1")).queue) == "custom_queue"
        stats = await pool.hgetall(keys.stats(":custom_queue"))
        assert stats[b"failed"] == b"1"  # (a plain function, not @job, counts no completion)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await broker.aclose(close_connection_pool=True)


async def _subscribed(pool: ArqRedis, channel: str) -> bool:
    return bool(dict(await pool.pubsub_numsub(channel)).get(channel.encode()))


async def _until(check: Callable[[], Any], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


# --- burst mode waits for deferred jobs ---------------------------------------------------------


async def retry_once(ctx: dict[str, Any]) -> str:
    if ctx["job_try"] == 1:
        raise Retry(defer=0.5)
    return "second try"


@pytest.mark.parametrize("cls", WORKERS)
async def test_burst_mode_runs_deferred_jobs_and_retries_before_it_exits(cls, pool, make_worker):
    r = await pool.enqueue_job("retry_once")
    d = await pool.enqueue_job("good", _defer_by=1)
    assert r is not None and d is not None
    w = await run_burst(await make_worker(cls, [retry_once, good], burst=True, poll_delay=0.1))
    assert (w.jobs_complete, w.jobs_retried, await pool.zcard(default_queue_name)) == (2, 1, 0)
    assert await r.result(timeout=1) == "second try" and await d.result(timeout=1) == "ok"


# --- arq's Job.abort() ------------------------------------------------------------------------


async def long_job(ctx: dict[str, Any]) -> str:
    await asyncio.sleep(30)
    return "not aborted"


@pytest.mark.parametrize("cls", WORKERS)
async def test_arqs_job_abort_cancels_a_running_job(cls, pool, make_worker):
    """arq's ``Job.abort()`` only adds the id to ``arq:abort`` (and polls the result every
    0.5 s); a worker with ``allow_abort_jobs`` cancels the job at its next poll."""
    w = await make_worker(cls, [long_job], allow_abort_jobs=True)  # arq's default poll_delay (0.5 s)
    task = asyncio.get_running_loop().create_task(w.main())
    try:
        j = await pool.enqueue_job("long_job")
        assert j is not None
        await _until(lambda: _is(j, JobStatus.in_progress))
        t0 = asyncio.get_running_loop().time()
        assert await j.abort(timeout=10) is True
        assert asyncio.get_running_loop().time() - t0 < 5  # arq: about 1 s; the job sleeps 30 s
        info = await j.result_info()
        assert info is not None and isinstance(info.result, asyncio.CancelledError)
        assert w.jobs_failed == 1 and w.jobs_complete == 0
    finally:
        w.burst = True  # let the loop end by itself (the queue is empty)
        async with asyncio.timeout(10):
            await task


@pytest.mark.parametrize("cls", WORKERS)
async def test_abort_requests_are_ignored_unless_allow_abort_jobs(cls, pool, make_worker):
    """arq's default: ``allow_abort_jobs=False``, and a job asked to abort before it starts runs."""
    await _aborted_before_start(pool)
    w = await run_burst(await make_worker(cls, [good], burst=True, poll_delay=0.1))
    assert (w.allow_abort_jobs, w.jobs_complete, w.jobs_failed) == (False, 1, 0)
    assert await Job("bad-1", pool).result(timeout=1) == "ok"


async def _is(j: Job, status: JobStatus) -> bool:
    return await j.status() is status


# --- poll_delay=0 -------------------------------------------------------------------------------

POLL_DELAY_ZERO = """
import asyncio, sys, time
import arq.worker, asyncjobs
from arq.connections import RedisSettings, create_pool

async def short(ctx):
    await asyncio.sleep(0.02)

async def main():
    url, which = sys.argv[1], sys.argv[2]
    if which == "settings":  # an asyncjobs settings class, run as arq's create_worker runs one
        cls = asyncjobs.worker_settings([asyncjobs.job(name="short")(short)], settings=asyncjobs.Settings(
            redis_url=url), poll_delay=0, max_jobs=2, burst=True, handle_signals=False)
        kwargs = arq.worker.get_kwargs(cls)
        pool = await create_pool(RedisSettings.from_dsn(url), job_serializer=kwargs["job_serializer"])
        w = asyncjobs.Worker(**kwargs)
    else:
        pool = await create_pool(RedisSettings.from_dsn(url))
        Worker = asyncjobs.Worker if which == "asyncjobs" else arq.worker.Worker
        w = Worker(functions=[short], redis_pool=pool, max_jobs=2, poll_delay=0, burst=True,
                   handle_signals=False)
    for _ in range(5):
        await pool.enqueue_job("short")
    await w.main()
    print(w.jobs_complete, flush=True)

asyncio.run(main())
"""


@pytest.mark.parametrize("which", ["arq", "asyncjobs", "settings"])
def test_poll_delay_zero_with_every_slot_busy_still_runs_the_jobs(which, redis_url, tmp_path):
    """In a subprocess: a worker that never yields cannot be stopped from inside its loop."""
    script = tmp_path / "poll0.py"
    script.write_text(textwrap.dedent(POLL_DELAY_ZERO))
    p = subprocess.run(
        [sys.executable, str(script), redis_url, which], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.split() == ["5"], p.stdout


# --- the pool a worker builds for itself --------------------------------------------------------


async def parent(ctx: dict[str, Any]) -> str:
    child = await ctx["redis"].enqueue_job("child", {"n": 1}, _job_id="child-1")
    return child.job_id


async def child(ctx: dict[str, Any], data: dict[str, int]) -> int:
    return data["n"] + 1


@pytest.mark.parametrize("cls", WORKERS)
async def test_a_job_enqueued_through_ctx_redis_uses_the_workers_serializer(cls, pool, make_worker):
    """The worker builds its own pool from ``redis_settings`` (as the ``arq`` CLI and
    ``create_worker`` do) with its own serializer: arq's pickle by default."""
    p = await pool.enqueue_job("parent")
    assert p is not None
    w = await run_burst(await make_worker(cls, [parent, child], own_pool=False, burst=True, poll_delay=0.1))
    assert (w.jobs_complete, w.jobs_failed) == (2, 0)
    assert await p.result(timeout=1) == "child-1"
    assert await Job("child-1", pool).result(timeout=1) == 2


async def test_the_cli_worker_in_burst_mode_waits_for_a_deferred_job(client, cli_env):
    handle = await client.enqueue_call("count_words", ["one two"], defer_by=1)
    p = subprocess.run(
        [sys.executable, "-m", "asyncjobs", "worker", "--burst"],
        cwd=ROOT,
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    assert await handle.result(timeout=1) == 2
