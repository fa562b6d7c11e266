"""Timeouts really stop async jobs; plain functions run in a thread or process executor, so
blocking or CPU-bound work does not freeze the worker's event loop (leases, other jobs)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import psutil
import pytest
from reliability_app import (
    rel_blocking_sleep,
    rel_cpu,
    rel_cpu_for,
    rel_fails_in_process,
    rel_spin,
    rel_spin_1s_timeout,
)
from reliability_support import wait_for

import asyncjobs
from asyncjobs import ConfigError, JobAborted, JobFailed, JobStatus, keys

CPU_S = 3.0  # of CPU in the pool process: longer than the 2 s lease, so it must be renewed
reached_after_sleep: list[str] = []


@asyncjobs.job(timeout=0.3)
async def sleeps_past_its_timeout(ctx: asyncjobs.JobContext) -> None:
    await asyncio.sleep(5)
    reached_after_sleep.append(ctx.job_id)


@asyncjobs.job
async def quick(ctx: asyncjobs.JobContext) -> float:
    return time.time()


thread_started: list[float] = []
thread_stopped: list[float] = []


def _wait_for_cancel(seconds: float) -> str:
    thread_started.append(time.time())
    if asyncjobs.cancel_event().wait(seconds):  # a sleep that a cancel cuts short
        thread_stopped.append(time.time())
        return "cancelled"
    return "finished"


@asyncjobs.job(executor="thread", timeout=0.5)
def thread_past_its_timeout(seconds: float) -> str:
    return _wait_for_cancel(seconds)


@asyncjobs.job(executor="thread", timeout=60)
def thread_to_abort(seconds: float) -> str:
    return _wait_for_cancel(seconds)


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
    worker = await start_worker([rel_cpu, rel_cpu_for, quick])  # lease 2 s, renewed every ~0.67 s
    assert await (await client.enqueue(rel_cpu, 10)).result(timeout=30) == 285  # warm the process pool
    started = time.monotonic()
    cpu = await client.enqueue(rel_cpu_for, CPU_S)
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
    iterations, used_cpu_s = await cpu.result(timeout=30)
    assert iterations > 0 and used_cpu_s >= CPU_S
    cpu_s = time.monotonic() - started
    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)]
    print(
        f"\nprocess job: {cpu_s:.2f}s wall for {used_cpu_s:.2f}s of CPU; meanwhile {len(latencies)} quick jobs, "
        f"p95 latency "
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


KILLED_WITHIN_S = 1.0


async def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


async def _cpu_stopped_after(pid: int, since: float) -> float:
    """Seconds from ``since`` (a ``time.time()``) until process ``pid`` is gone: no more CPU."""
    await wait_for(lambda: _gone(pid), f"process {pid} to stop burning CPU", timeout=30, interval=0.01)
    return time.time() - since


async def _warm_pool(client) -> None:
    assert await (await client.enqueue(rel_cpu, 10)).result(timeout=30) == 285


async def test_timed_out_process_job_is_killed_and_the_pool_goes_on(client, start_worker, tmp_path):
    await start_worker([rel_spin_1s_timeout, rel_cpu])
    await _warm_pool(client)  # so the 1 s timeout is spent in the job, not in starting a process
    pidfile = tmp_path / "pid"
    handle = await client.enqueue(rel_spin_1s_timeout, 30.0, str(pidfile))
    with pytest.raises(JobFailed) as e:
        await handle.result(timeout=30)
    assert "exceeded its 1s timeout" in str(e.value)
    info = await handle.info()
    assert info.status is JobStatus.FAILED and info.start_ms is not None
    pid = int(pidfile.read_text())
    stopped = await _cpu_stopped_after(pid, info.start_ms / 1000 + 1.0)
    print(f"\nprocess job timed out at 1s: its process was gone {stopped:.2f}s after the timeout")
    assert stopped < KILLED_WITHIN_S
    await _warm_pool(client)  # a fresh process takes the next job


async def test_aborted_process_job_is_killed_and_the_pool_goes_on(client, start_worker, tmp_path):
    await start_worker([rel_spin, rel_cpu])
    await _warm_pool(client)
    pidfile = tmp_path / "pid"
    handle = await client.enqueue(rel_spin, 30.0, str(pidfile))
    await wait_for(pidfile.exists, "the process job to start")
    pid = int(pidfile.read_text())
    asked = time.time()
    assert await handle.abort()
    with pytest.raises(JobAborted):
        await handle.result(timeout=10)
    stopped = await _cpu_stopped_after(pid, asked)
    print(f"\nprocess job aborted: its process was gone {stopped:.2f}s after the abort request")
    assert stopped < KILLED_WITHIN_S
    assert (await handle.info()).status is JobStatus.ABORTED
    await _warm_pool(client)


async def test_thread_job_sees_its_cancel_event_on_timeout_and_abort(client, start_worker):
    thread_started.clear()
    thread_stopped.clear()
    await start_worker([thread_past_its_timeout, thread_to_abort])
    timed_out = await client.enqueue(thread_past_its_timeout, 30.0)
    with pytest.raises(JobFailed) as e:
        await timed_out.result(timeout=10)
    assert "exceeded its 0.5s timeout" in str(e.value)
    await wait_for(lambda: thread_stopped, "the thread to see its cancel event", timeout=5)
    assert thread_stopped[0] - thread_started[0] < 0.5 + KILLED_WITHIN_S

    aborted = await client.enqueue(thread_to_abort, 30.0)
    await wait_for(lambda: len(thread_started) == 2, "the second thread job to start")
    asked = time.time()
    assert await aborted.abort()
    with pytest.raises(JobAborted):
        await aborted.result(timeout=10)
    await wait_for(lambda: len(thread_stopped) == 2, "the aborted thread to see its cancel event", timeout=5)
    assert thread_stopped[1] - asked < KILLED_WITHIN_S
    assert asyncjobs.cancel_event().is_set() is False  # outside a job: a flag nobody sets


async def test_process_job_error_comes_back_with_its_remote_traceback(client, start_worker):
    await start_worker([rel_fails_in_process])
    with pytest.raises(JobFailed) as e:
        await (await client.enqueue(rel_fails_in_process, "bad row 7")).result(timeout=30)
    assert "ValueError" in str(e.value) and "bad row 7" in str(e.value)


async def test_process_job_does_not_outlive_a_killed_worker(rel_workers, tmp_path):
    w = rel_workers.start()
    pidfile = tmp_path / "pid"
    async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:
        await client.enqueue(rel_spin, 60.0, str(pidfile))
        await wait_for(pidfile.exists, "the process job to start", timeout=60)
    pid = int(pidfile.read_text())
    w.kill()  # SIGKILL: the worker cannot stop its pool
    killed_at = time.time()
    try:
        stopped = await _cpu_stopped_after(pid, killed_at)
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()  # an orphan must not burn CPU for the tests after this one
    print(f"\nworker killed mid process job: the job's process was gone {stopped:.2f}s later")
    assert stopped < KILLED_WITHIN_S
