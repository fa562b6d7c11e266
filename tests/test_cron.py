"""Cron: crontab strings and arq's field form, time zones, and once-per-tick across workers."""

from __future__ import annotations

import asyncio
import signal
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

import asyncjobs
from asyncjobs import ConfigError, cron, job, worker_settings
from asyncjobs.cron import CrontabJob

ROOT = Path(__file__).resolve().parents[1]


@job
async def tick(ctx) -> str:
    return ctx.job_id


def test_crontab_string_next_runs_in_its_zone():
    cj = cron("30 9 * * 1-5", tick, tz="America/New_York")
    assert isinstance(cj, CrontabJob) and cj.name == "cron:tick"
    cj.calculate_next(datetime(2024, 7, 5, 12, 0, tzinfo=UTC))  # Friday 08:00 in New York
    assert cj.next_run == datetime(2024, 7, 5, 9, 30, tzinfo=ZoneInfo("America/New_York"))
    cj.calculate_next(cj.next_run)
    assert cj.next_run.astimezone(UTC) == datetime(2024, 7, 8, 13, 30, tzinfo=UTC)  # Monday


def test_every_five_minutes():
    cj = cron("*/5 * * * *", tick)
    cj.calculate_next(datetime(2024, 1, 1, 0, 7, 12, tzinfo=UTC))
    assert cj.next_run == datetime(2024, 1, 1, 0, 10, tzinfo=UTC)


def test_six_fields_add_seconds_last():
    cj = cron("* * * * * */10", tick)
    cj.calculate_next(datetime(2024, 1, 1, 0, 0, 3, 500, tzinfo=UTC))
    assert cj.next_run == datetime(2024, 1, 1, 0, 0, 10, tzinfo=UTC)


def test_arq_field_form_honours_tz():
    cj = cron(None, tick, tz="Asia/Tokyo", hour={9}, minute={0}, name="morning")
    assert cj.name == "cron:morning"  # its ticks' ids live in the scheduler's namespace
    cj.calculate_next(datetime(2024, 1, 1, 0, 30, tzinfo=UTC))  # 09:30 in Tokyo: next is tomorrow
    assert cj.next_run is not None
    assert cj.next_run.astimezone(UTC).replace(microsecond=0) == datetime(2024, 1, 2, 0, 0, tzinfo=UTC)


def test_cron_keeps_the_functions_retries():
    @job(retries=2)
    async def careful(ctx) -> None: ...

    assert cron("* * * * *", careful).max_tries == 3


@pytest.mark.parametrize(
    ("schedule", "fields", "needle"),
    [
        ("every minute", {}, "not a crontab expression"),
        ("* * * * *", {"minute": {1}}, "not both"),
    ],
)
def test_bad_cron_definitions(schedule, fields, needle):
    with pytest.raises(ConfigError, match=needle):
        cron(schedule, tick, **fields)


def test_cron_needs_a_job_function():
    async def bare(ctx) -> None: ...

    with pytest.raises(ConfigError, match="@job"):
        cron("* * * * *", bare)  # type: ignore[arg-type]


def test_an_arq_cron_job_gets_the_reserved_id_prefix():
    from arq.cron import cron as arq_cron

    cls = worker_settings([tick], cron_jobs=[arq_cron(tick.func, name="tick", second={0})])
    assert [cj.name for cj in cls.cron_jobs] == ["cron:tick"]


def test_cron_function_must_be_registered():
    @job
    async def orphan(ctx) -> None: ...

    with pytest.raises(ConfigError, match="register its function 'orphan'"):
        worker_settings([tick], cron_jobs=[cron("* * * * *", orphan)])


CRON_SETTINGS = """
import os

from asyncjobs import Registry, Settings, cron, job, worker_settings


@job
async def every_second(ctx) -> str:
    await ctx.redis.incr("ticks:" + ctx.job_id)
    await ctx.redis.sadd("tick-pids", os.getpid())
    return ctx.job_id


SETTINGS = Settings(redis_url=os.environ["REDIS_URL"], lease=2.0, poll_delay=0.2)
REGISTRY = Registry([every_second])
WorkerSettings = worker_settings(REGISTRY, settings=SETTINGS, cron_jobs=[cron("* * * * * *", every_second)])
"""


async def test_cron_tick_runs_exactly_once_with_two_worker_processes(tmp_path, spawn, redis_url):
    (tmp_path / "cron_settings_mod.py").write_text(textwrap.dedent(CRON_SETTINGS))
    env = {"PYTHONPATH": f"{tmp_path}:{ROOT}"}
    workers = [
        spawn(sys.executable, "-m", "asyncjobs", "--settings", "cron_settings_mod", "worker", env=env) for _ in range(2)
    ]
    r = aioredis.from_url(redis_url)
    try:
        async with asyncjobs.connect(redis_url) as client:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 20
            while len(await client.workers()) < 2 or len(await r.keys("ticks:*")) < 5:
                assert loop.time() < deadline, "two workers did not run five cron ticks within 20 s"
                assert all(w.poll() is None for w in workers), "a worker process exited"
                await asyncio.sleep(0.1)
            assert len(await client.workers()) == 2
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            await asyncio.to_thread(w.wait, 15)
        ticks = {k.decode(): int(await r.get(k)) for k in await r.keys("ticks:*")}
    finally:
        await r.aclose()
    assert len(ticks) >= 5
    assert all(n == 1 for n in ticks.values()), ticks
    stamps = sorted(int(k.rsplit(":", 1)[1]) for k in ticks)
    assert all(ms % 1000 == 0 for ms in stamps)  # one id per whole-second tick
    assert stamps == list(range(stamps[0], stamps[-1] + 1000, 1000)), "a tick was skipped"


async def test_a_cron_tick_id_cannot_be_squatted_and_the_tick_still_runs(client, start_worker):
    """Enqueueing anything under the next tick's id (``cron:<name>:<tick ms>``) is refused, so the
    scheduler still enqueues and runs that tick with its own function."""

    @job
    async def squatter(ctx) -> str:
        return "squatted"

    cj = cron("* * * * * *", tick)
    now = datetime.now(UTC)
    next_ticks = [int(now.timestamp()) * 1000 + 1000 * i for i in range(1, 4)]
    for ms in next_ticks:
        with pytest.raises(ConfigError, match=r"job_id 'cron:tick:\d+' is reserved") as e:
            await client.enqueue_call("squatter", job_id=f"{cj.name}:{ms}")
        assert e.value.key == "job_id"
    with pytest.raises(ConfigError, match="reserved"):
        await client.enqueue(squatter.options(job_id=f"cron:tick:{next_ticks[0]}"))
    with pytest.raises(ConfigError, match="reserved"):
        await client.enqueue_many([asyncjobs.call(squatter.options(job_id="cron:anything"))])
    await start_worker([tick, squatter], cron_jobs=[cj])
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    ran = None
    while ran is None:
        for ms in next_ticks:
            rec = await client.job(f"cron:tick:{ms}").info()  # looking a tick up is fine
            if rec.status is asyncjobs.JobStatus.COMPLETE:
                ran = rec
        assert loop.time() < deadline, "no cron tick ran within 15 s"
        await asyncio.sleep(0.05)
    assert ran.function == "cron:tick" and ran.result == ran.job_id


async def test_a_dead_lettered_cron_tick_can_still_be_retried(client, start_worker):
    @job
    async def boom(ctx) -> None:
        raise RuntimeError("x")

    await start_worker([boom])
    await client.redis.enqueue_job("boom", _job_id="cron:boom:1000")  # as the scheduler does
    with pytest.raises(asyncjobs.JobFailed):
        await client.job("cron:boom:1000").result(timeout=10)
    handle = await client.retry_dead("cron:boom:1000")  # our own re-enqueue may use the id
    assert handle.id == "cron:boom:1000"
    with pytest.raises(asyncjobs.JobFailed):
        await handle.result(timeout=10)
