"""SIGTERM: stop claiming, let running jobs finish within the grace period, then cancel and
re-queue the rest (due at once for other workers); a second signal stops at once."""

from __future__ import annotations

import signal
import time

import pytest
from reliability_app import read_runs, rel_slow, rel_slow_first_try
from reliability_support import Workers, wait_for

import asyncjobs
from asyncjobs import JobStatus


def starts(runlog, job_id):
    return [r for r in read_runs(runlog) if r[0] == job_id]


async def test_sigterm_drains_then_requeues_what_is_left(rel_workers):
    a = rel_workers.start(ASYNCJOBS_SHUTDOWN_GRACE="1")
    async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:
        short = await client.enqueue(rel_slow, 0.5)
        # still running however long worker B takes to start on a loaded machine
        long = await client.enqueue(rel_slow_first_try, 60.0, 0.5)
        await wait_for(lambda: len(read_runs(rel_workers.runlog)) == 2, "both jobs to start on worker A")
        b = rel_workers.start()
        await wait_for(lambda: "queues" in b.output(), "worker B to start")

        a.signal(signal.SIGTERM)
        await wait_for(lambda: "draining" in a.output(), "worker A to start draining")
        late = await client.enqueue(rel_slow, 0.1)  # enqueued during the drain: B must run it
        assert await late.result(timeout=10) == f"done by {b.proc.pid}"
        assert await short.result(timeout=10) == f"done by {a.proc.pid}"  # finished within the grace

        await wait_for(lambda: a.proc.poll() is not None, "worker A to exit", timeout=15)
        exited_at = time.monotonic()
        rerun = await wait_for(lambda: len(starts(rel_workers.runlog, long.id)) == 2, "the re-queued job to re-run")
        requeue_to_rerun = time.monotonic() - exited_at
        assert rerun
        assert await long.result(timeout=15) == f"done by {b.proc.pid}"

    runs = starts(rel_workers.runlog, long.id)
    print(f"\nSIGTERM: re-queued job started on another worker {requeue_to_rerun:.2f}s after the drain ended")
    assert a.proc.returncode == 0
    assert [(r[1], r[2]) for r in runs] == [(1, a.proc.pid), (2, b.proc.pid)]
    assert requeue_to_rerun < 1.0  # due at once, not after the 2 s lease
    assert "1 job(s) cancelled and re-queued" in a.output()
    assert len(starts(rel_workers.runlog, short.id)) == 1  # nothing run twice that finished


async def test_second_sigterm_cancels_and_requeues_at_once(rel_workers):
    a = rel_workers.start(ASYNCJOBS_SHUTDOWN_GRACE="60")
    async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:
        handle = await client.enqueue(rel_slow, 60.0)
        await wait_for(lambda: read_runs(rel_workers.runlog), "the job to start")
        a.signal(signal.SIGTERM)
        await wait_for(lambda: "draining" in a.output(), "the drain to start")
        a.signal(signal.SIGTERM)
        t0 = time.monotonic()
        await wait_for(lambda: a.proc.poll() is not None, "worker A to exit", timeout=10)
        stopped_in = time.monotonic() - t0
        info = await handle.info()
    assert stopped_in < 5.0
    assert a.proc.returncode == 0
    assert info.status is JobStatus.QUEUED  # back in the queue, due now, for the next worker
    assert info.scheduled_ms is not None and info.scheduled_ms <= time.time() * 1000


@pytest.mark.parametrize("grace", ["10", "0"])
async def test_one_sigterm_stops_an_idle_worker_while_redis_is_down(private_redis, tmp_path, grace):
    server = private_redis()
    workers = Workers(tmp_path, server.url)
    try:
        w = workers.start(ASYNCJOBS_SHUTDOWN_GRACE=grace)
        async with asyncjobs.connect(server.url, default_queue=workers.queue) as client:
            await wait_for(lambda: _registered(client, w.proc.pid), "the worker to register")
        server.stop()
        await wait_for(lambda: "Redis" in w.output().split("queues", 1)[-1], "the worker to notice Redis is gone")
        w.signal(signal.SIGTERM)  # once: nothing runs, so nothing to drain
        t0 = time.monotonic()
        await wait_for(lambda: w.proc.poll() is not None, "the worker to exit on one SIGTERM", timeout=15)
        stopped_in = time.monotonic() - t0
    finally:
        workers.close()
    print(f"\nSIGTERM with Redis down: idle worker exited in {stopped_in:.2f}s with code {w.proc.returncode}")
    assert w.proc.returncode == 0
    assert stopped_in < 5.0


async def _registered(client, pid: int) -> bool:
    return any(w.get("pid") == pid for w in await client.workers())
