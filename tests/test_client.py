"""The client: enqueue (one, many, deferred, unique, by queue), job handles, lifecycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis.asyncio

import asyncjobs
from asyncjobs import (
    BrokerUnavailable,
    ConfigError,
    DuplicateJob,
    InvalidArguments,
    JobNotFound,
    JobStatus,
    UnknownFunction,
    call,
    job,
    keys,
)
from asyncjobs.errors import ClientClosed
from asyncjobs.examples import count_words, generate_report
from asyncjobs.testing import free_port


@job(queue="side")
async def on_side(ctx, queue: str, job_id: str) -> str:
    return f"{queue}/{job_id}"


async def round_trips(probe, action):
    """``(n, result)``: the round trips ``action()`` made to Redis (reads Redis processed, less
    those of the INFO calls around it, measured on one PING) and what it returned."""
    counts, result = [], None
    for act in (probe.ping, action):
        before = (await probe.info("stats"))["total_reads_processed"]
        result = await act()
        counts.append((await probe.info("stats"))["total_reads_processed"] - before)
    return counts[1] - counts[0] + 1, result


async def test_enqueue_many_is_one_batch_and_runs(private_redis, start_worker):
    server = private_redis()  # no other client: Redis's read count is this test's round trips
    probe = redis.asyncio.Redis.from_url(server.url)
    try:
        async with asyncjobs.connect(server.url) as client:
            await client.enqueue(count_words, "warm up")  # connects and loads the script
            calls = [call(count_words, "a " * i) for i in range(1, 21)]
            n, handles = await round_trips(probe, lambda: client.enqueue_many(calls))
            assert n == 1
            n, _ = await round_trips(probe, lambda: client.enqueue_many(calls[:10], batch_size=4))
            assert n == 3
            assert all(h is not None for h in handles)
            assert len({h.id for h in handles}) == 20
            await start_worker([count_words], settings=asyncjobs.Settings(redis_url=server.url, lease=2.0))
            assert [await h.result(timeout=10) for h in handles] == list(range(1, 21))
    finally:
        await probe.aclose()


async def test_enqueue_many_reports_taken_ids_as_none(client):
    first = await client.enqueue(count_words.options(job_id="dup-1"), "x")
    assert first.id == "dup-1"
    out = await client.enqueue_many([call(count_words.options(job_id="dup-1"), "y"), call(count_words, "z")])
    assert out[0] is None and out[1] is not None


async def test_job_id_is_unique(client):
    h = await client.enqueue(count_words.options(job_id="only-once"), "a")
    assert h.id == "only-once"
    with pytest.raises(DuplicateJob) as exc_info:
        await client.enqueue(count_words.options(job_id="only-once"), "b")
    assert exc_info.value.job_id == "only-once"
    assert (await h.info()).args == ["a"]


async def test_options_never_collide_with_the_functions_kwargs(client, start_worker, redis_url):
    await start_worker([on_side], settings=asyncjobs.Settings(redis_url=redis_url, queues=("side",), lease=2.0))
    h = await client.enqueue(on_side.options(job_id="mine"), queue="their-queue-arg", job_id="their-id-arg")
    assert h.id == "mine" and h.queue == "side"  # the function's default queue
    assert await h.result(timeout=10) == "their-queue-arg/their-id-arg"


async def test_enqueue_onto_a_named_queue(client, redis_url, start_worker, queue_name):
    h = await client.enqueue(count_words.options(queue=queue_name), "a b")
    assert h.queue == queue_name
    assert (await client.queue_stats([queue_name]))[0].queued == 1
    assert await h.status() is JobStatus.QUEUED
    await start_worker([count_words], settings=asyncjobs.Settings(redis_url=redis_url, queues=(queue_name,), lease=2.0))
    assert await h.result(timeout=10) == 2


async def test_defer_until_and_queue_stats(client, queue_name):
    when = datetime.now(UTC) + timedelta(seconds=60)
    h = await client.enqueue(count_words.options(defer_until=when, queue=queue_name), "x")
    info = await h.info()
    assert info.status is JobStatus.DEFERRED
    assert info.scheduled_ms == pytest.approx(when.timestamp() * 1000, abs=2)
    [stats] = await client.queue_stats([queue_name])
    assert (stats.queued, stats.deferred, stats.in_progress) == (0, 1, 0)


async def test_defer_by_and_defer_until_together_is_an_error(client):
    with pytest.raises(ConfigError, match="either defer_until or defer_by"):
        await client.enqueue_call("count_words", ["x"], defer_by=1, defer_until=datetime.now(UTC))


async def test_registry_checks_arguments_before_writing(redis_url):
    async with asyncjobs.connect(redis_url, registry=[count_words]) as c:
        with pytest.raises(InvalidArguments):
            await c.enqueue_call("count_words", [], {"nope": 1})
        with pytest.raises(UnknownFunction, match="registered: count_words"):
            await c.enqueue_call("count_wrods", ["x"])
        assert (await c.queue_stats())[0].queued == 0
        with pytest.raises(InvalidArguments):
            await c.enqueue(generate_report, 1, 2, 3, 4)


@pytest.mark.parametrize(("kw", "key"), [({"job_id": "has space"}, "job_id"), ({"queue": "bad/queue"}, "queue")])
async def test_bad_job_ids_and_queues_are_rejected(client, kw, key):
    with pytest.raises(ConfigError) as exc_info:
        await client.enqueue_call("count_words", ["x"], **kw)
    assert exc_info.value.key == key


async def test_unknown_job(client):
    h = client.job("never-enqueued")
    assert await h.status() is JobStatus.NOT_FOUND
    with pytest.raises(JobNotFound):
        await h.result(timeout=1)
    assert [e async for e in h.events(timeout=1)] == [{"job_id": "never-enqueued", "event": "not_found"}]
    assert await h.abort(timeout=1) is False


async def test_result_timeout_raises_timeout_error(client):
    h = await client.enqueue(count_words, "nobody runs me")
    with pytest.raises(TimeoutError, match=r"did not finish within 0\.2s"):
        await h.result(timeout=0.2)


async def test_handle_of_a_finished_job_yields_its_terminal_event(client, start_worker):
    await start_worker([count_words])
    h = await client.enqueue(count_words, "a b")
    assert await h.result(timeout=10) == 2
    events = [e async for e in client.job(h.id).events(timeout=5)]
    assert [e["event"] for e in events] == ["complete"]


async def test_client_lifecycle(redis_url):
    c = asyncjobs.connect(redis_url)
    with pytest.raises(ClientClosed, match="async with"):
        await c.enqueue(count_words, "x")
    async with c:
        assert (await c.enqueue(count_words, "x")).id
    with pytest.raises(ClientClosed):
        await c.enqueue(count_words, "x")
    with pytest.raises(ClientClosed, match="create a new one"):
        await c.open()


async def test_unreachable_redis_is_broker_unavailable():
    url = f"redis://:sekret@127.0.0.1:{free_port()}/0"
    with pytest.raises(BrokerUnavailable) as exc_info:
        async with asyncjobs.connect(url):
            pass
    msg = str(exc_info.value)
    assert "127.0.0.1" in msg and "sekret" not in msg and "REDIS_URL" in msg


async def test_workers_are_listed(client, start_worker):
    await start_worker([count_words])
    assert await (await client.enqueue(count_words, "x")).result(timeout=10) == 1
    workers = await client.workers()
    assert len(workers) == 1 and workers[0]["queues"] == ["default"]


async def test_enqueue_writes_no_index_entry_and_ids_keep_creation_order(client):
    """A queued job costs its job key and its queue entry only; jobs due in the same
    millisecond stay first in, first out, because their ids sort by creation."""
    handles = [await client.enqueue(count_words, str(i)) for i in range(50)]
    assert await client.redis.zcard(keys.RECENT) == 0
    queued = [i.decode() for i in await client.redis.zrange(keys.queue("default"), 0, -1)]
    assert queued == [h.id for h in handles]


async def test_started_jobs_are_indexed_newest_first(client, start_worker):
    """The recent index (the dashboard's history) gets each job as a worker starts it."""
    handles = [await client.enqueue(count_words, str(i)) for i in range(30)]
    await start_worker([count_words], max_jobs=1)
    for h in handles:
        assert await h.result(timeout=10) == 1
    newest_first = [i.decode() for i in await client.redis.zrevrange(keys.RECENT, 0, -1)]
    assert newest_first == [h.id for h in reversed(handles)]


async def test_a_job_on_a_queue_the_client_was_not_given_is_found_by_id(client, start_worker, redis_url):
    other = await client.enqueue_call("count_words", ["a b"], job_id="elsewhere-1", queue="high")
    assert client.queues == ["default"]
    handle = client.job(other.id)  # no queue given: found through the queue its record names
    info = await handle.info()
    assert (info.status, info.queue) == (JobStatus.QUEUED, "high")
    with pytest.raises(TimeoutError):
        await handle.result(timeout=0.05)  # waiting, not "never enqueued"
    assert await handle.abort() is True
    assert await handle.status() is JobStatus.ABORTED

    ran = await client.enqueue_call("count_words", ["a b c"], queue="high")
    await start_worker([count_words], settings=asyncjobs.Settings(redis_url=redis_url, queues=("high",), lease=2.0))
    assert await client.job(ran.id).result(timeout=10) == 3


async def test_a_lookup_by_id_costs_one_round_trip_on_the_clients_own_queues(private_redis):
    server = private_redis()
    probe = redis.asyncio.Redis.from_url(server.url)
    try:
        async with asyncjobs.connect(server.url) as client:
            home = await client.enqueue(count_words, "a")
            away = await client.enqueue_call("count_words", ["a"], queue="high")
            assert await client.job(home.id).status() is JobStatus.QUEUED  # connects
            n, rec = await round_trips(probe, client.job(home.id).info)
            assert (n, rec.status) == (1, JobStatus.QUEUED)
            n, rec = await round_trips(probe, client.job(away.id).info)
            assert (n, rec.status) == (2, JobStatus.QUEUED)  # the queue its record names, read next
    finally:
        await probe.aclose()
