"""Timeouts really stop async jobs; plain functions run in a thread or process executor, so
blocking or CPU-bound work does not freeze the worker's event loop (leases, other jobs)."""

from __future__ import annotations

import asyncio
import time

import pytest
from reliability_app import rel_blocking_sleep, rel_cpu

import asyncjobs
from asyncjobs import ConfigError, JobFailed, keys

N = 20_000_000  # ~2.5 s of CPU: longer than the 2 s lease, so it must be renewed
reached_after_sleep: list[str] = []


@asyncjobs.job(timeout=0.3)
async def sleeps_past_its_timeout(ctx: asyncjobs.JobContext) -> None:
    await asyncio.sleep(5)
    reached_after_sleep.append(ctx.job_id)


@asyncjobs.job
async def quick(ctx: asyncjobs.JobContext) -> float:
    return time.time()


async def test_timeout_cancels_an_async_job(client, start_worker):
    await start_worker([sleeps_past_its_timeout])
    t0 = time.monotonic()
    handle = await client.enqueue(sleeps_past_its_timeout)
    with pytest.raises(JobFailed) as e:
        await handle.result(timeout=10)
    assert time.monotonic() - t0 < 2.0
    assert "exceeded its 0.3s timeout" in str(e.value)
    assert reached_after_sleep == []  # the coroutine was cancelled, not left running


async def test_thread_job_does_not_block_the_event_loop(client, start_worker):
    await start_worker([rel_blocking_sleep, quick])
    blocking = await client.enqueue(rel_blocking_sleep, 1.0)
    await asyncio.sleep(0)
    other = await client.enqueue(quick)
    finished_quick = await other.result(timeout=5)
    assert await blocking.result(timeout=5) == 1.0
    assert (await blocking.info()).finish_ms > finished_quick * 1000  # quick ran while the thread slept


async def test_cpu_bound_process_job_does_not_delay_leases_or_other_jobs(client, start_worker):
    worker = await start_worker([rel_cpu, quick])  # lease 2 s, renewed every ~0.67 s
    assert await (await client.enqueue(rel_cpu, 10)).result(timeout=30) == 285  # warm the process pool
    started = time.monotonic()
    cpu = await client.enqueue(rel_cpu, N)
    in_progress = keys.in_progress(cpu.id)
    assert await asyncio.wait_for(_until_exists(client, in_progress), 5)
    lowest_ttl_ms, latencies = 10_000, []
    while await client.redis.exists(in_progress):
        t0 = time.monotonic()
        await (await client.enqueue(quick)).result(timeout=5)
        latencies.append(time.monotonic() - t0)
        ttl = await client.redis.pttl(in_progress)
        if ttl > 0:
            lowest_ttl_ms = min(lowest_ttl_ms, ttl)
    assert await cpu.result(timeout=30) == sum(i * i for i in range(N)) % 1_000_003
    cpu_s = time.monotonic() - started
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)]
    print(
        f"\nprocess job: {cpu_s:.2f}s of CPU; meanwhile {len(latencies)} quick jobs, p95 latency "
        f"{p95 * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms; lowest lease ttl {lowest_ttl_ms} ms of "
        f"{worker.lease_s * 1000:.0f}"
    )
    assert len(latencies) >= 5
    assert p95 < 0.1 and latencies[-1] < cpu_s / 2  # the event loop kept serving jobs
    assert cpu_s > worker.lease_s and lowest_ttl_ms > worker.lease_s * 1000 / 3  # renewed on time throughout


async def _until_exists(client, key: str) -> bool:
    while not await client.redis.exists(key):
        await asyncio.sleep(0.01)
    return True


def test_executor_options_are_checked():
    with pytest.raises(ConfigError, match="executor='thread'"):
        asyncjobs.job(lambda x: x)
    with pytest.raises(ConfigError, match="not 'thread' or 'process'"):
        asyncjobs.job(executor="fiber")(lambda x: x)
    with pytest.raises(ConfigError, match="module-level"):
        asyncjobs.job(executor="process")(lambda x: x)
    with pytest.raises(ConfigError, match="for plain functions"):
        asyncjobs.job(executor="thread")(quick.func)
    rel_cpu.bind([10], {})  # no ctx for executor functions
