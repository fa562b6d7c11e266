"""arq failures users report, fixed in asyncjobs' layer: stale abort requests, failed jobs'
result retention, job id reuse, and the job-key expiry."""

from __future__ import annotations

import logging

import pytest
from arq.utils import timestamp_ms
from reliability_support import wait_for

import asyncjobs
from asyncjobs import JobFailed, JobStatus, Settings, deadletter, keys
from asyncjobs.housekeeping import ABORT_MAX_AGE_MS


@asyncjobs.job(keep_result=0.3)
async def echo(ctx: asyncjobs.JobContext, value: str) -> str:
    return f"{value} try {ctx.job_try}"


@asyncjobs.job(keep_result=2)
async def fails(ctx: asyncjobs.JobContext) -> None:
    raise ValueError("boom")


async def test_stale_abort_request_does_not_kill_a_later_job_with_the_same_id(client, start_worker):
    await start_worker([echo])
    first = await client.enqueue(echo.options(job_id="reused-1"), "a")
    assert await first.result(timeout=10) == "a try 1"
    # an abort that arrived too late (the job had finished) stays in arq:abort; arq never prunes it
    await client.redis.zadd(keys.ARQ_ABORT, {"reused-1": timestamp_ms()})
    await client.redis.delete(keys.result("reused-1"))
    second = await client.enqueue(echo.options(job_id="reused-1"), "b")
    assert await second.result(timeout=10) == "b try 1"
    assert await client.redis.zscore(keys.ARQ_ABORT, "reused-1") is None


async def test_abort_requests_older_than_an_hour_are_pruned(client, start_worker):
    await client.redis.zadd(
        keys.ARQ_ABORT, {"ancient": timestamp_ms() - ABORT_MAX_AGE_MS - 1000, "recent": timestamp_ms()}
    )
    await start_worker([echo])
    await wait_for(lambda: _missing(client, "ancient"), "the housekeeper to prune the stale abort", timeout=10)
    assert await client.redis.zscore(keys.ARQ_ABORT, "recent") is not None


async def _missing(client, member: str) -> bool:
    return await client.redis.zscore(keys.ARQ_ABORT, member) is None


async def test_failed_job_keeps_its_result_for_the_functions_keep_result(client, start_worker):
    await start_worker([fails])  # the worker's default keep_result is an hour
    handle = await client.enqueue(fails)
    with pytest.raises(JobFailed, match="boom"):
        await handle.result(timeout=10)
    assert 0 < await client.redis.pttl(keys.result(handle.id)) <= 2000


async def test_early_failure_keeps_its_result_for_the_functions_keep_result(client, start_worker):
    # too many tries (the path arq's finish_failed_job takes with the worker's keep_result)
    handle = await client.enqueue(fails.options(job_id="too-many-tries", defer_by=0.2))
    await client.redis.set(keys.retry(handle.id), 50)
    await start_worker([fails])
    with pytest.raises(JobFailed, match="retries exceeded"):
        await handle.result(timeout=10)
    assert 0 < await client.redis.pttl(keys.result(handle.id)) <= 2000


async def test_job_id_can_be_reused_after_its_result_expired_or_was_deleted(client, start_worker):
    await start_worker([echo])
    handle = await client.enqueue(echo.options(job_id="again"), "one")
    assert await handle.result(timeout=10) == "one try 1"
    await wait_for(lambda: _gone(client, keys.result("again")), "the result to expire (keep_result 0.3 s)")
    await client.redis.set(keys.retry("again"), 7)  # a leftover try counter must not carry over
    handle = await client.enqueue(echo.options(job_id="again"), "two")
    assert await handle.result(timeout=10) == "two try 1"
    await client.redis.delete(keys.result("again"))
    handle = await client.enqueue(echo.options(job_id="again"), "three")
    assert await handle.result(timeout=10) == "three try 1"


async def _gone(client, key: str) -> bool:
    return not await client.redis.exists(key)


async def test_expired_job_is_logged_and_dead_lettered(redis_url, start_worker, caplog):
    caplog.set_level(logging.WARNING)
    async with asyncjobs.connect(redis_url, job_expiry=0.3) as client:
        handle = await client.enqueue(echo, "late")
        assert 0 < await client.redis.pttl(keys.job(handle.id)) <= 300
        await wait_for(lambda: _gone(client, keys.job(handle.id)), "the job key to expire")
        worker = await start_worker([echo], settings=Settings(redis_url=redis_url, lease=2.0, job_expiry=0.3))
        assert worker.expires_extra_ms == 300
        await wait_for(lambda: client.redis.exists(keys.dead(handle.id)), "the expired job's dead letter")
        entry = await deadletter.get(client.redis, handle.id)
        assert await handle.status() is JobStatus.FAILED
    assert entry.reason == "job expired"
    assert f"job {handle.id} expired" in caplog.text
    assert await _queue_empty(redis_url)


async def _queue_empty(redis_url: str) -> bool:
    async with asyncjobs.connect(redis_url) as client:
        return await client.redis.zcard(keys.queue(keys.DEFAULT_QUEUE)) == 0


def test_job_expiry_is_a_setting():
    from settings import load

    s = load({"ASYNCJOBS_JOB_EXPIRY": "172800", "ASYNCJOBS_SHUTDOWN_GRACE": "10"})
    cls = asyncjobs.worker_settings([echo], settings=s)
    assert cls.expires_extra_ms == 172_800_000
    assert cls.job_completion_wait == 10.0
    with pytest.raises(asyncjobs.ConfigError, match="job_expiry"):
        Settings(job_expiry=0)


async def test_a_queued_job_never_expires_by_default(redis_url):
    """arq expires a job key a day after it is due, so an old backlog vanished; asyncjobs'
    default is no expiry (a job waits for a worker however long that takes)."""
    async with asyncjobs.connect(redis_url) as client:
        plain = await client.enqueue(echo, "waits")
        deferred = await client.enqueue(echo.options(defer_by=3600), "later")
        debounced = await client.enqueue(echo.options(debounce=60, dedupe_key="d"), "first")
        again = await client.enqueue(echo.options(debounce=60, dedupe_key="d"), "second")
        assert again.id == debounced.id
        for handle in (plain, deferred, debounced):
            assert await client.redis.pttl(keys.job(handle.id)) == -1  # no expiry
        window = keys.flow("debounce", echo.name, "k:d")
        assert 86_400_000 < await client.redis.pttl(window) <= 86_460_000  # the window plus a day
    assert "expires_extra_ms" not in vars(asyncjobs.worker_settings([echo], settings=Settings()))


async def test_job_expiry_setting_reaches_the_web_servers_enqueues(redis_url):
    from aiohttp.test_utils import TestClient, TestServer

    from web.app import create_app
    from web.state import CLIENT

    app = create_app(Settings(redis_url=redis_url, job_expiry=120), registry=asyncjobs.Registry([echo]))
    async with TestClient(TestServer(app)) as http:
        resp = await http.post("/api/jobs", json={"function": echo.name, "args": ["x"]})
        assert resp.status == 202, await resp.text()
        job_id = (await resp.json())["job_id"]
        assert 0 < await app[CLIENT].redis.pttl(keys.job(job_id)) <= 120_000
