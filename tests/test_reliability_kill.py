"""kill -9 of a worker mid-job: the job re-runs on a live worker once its lease lapses; a job
that kills its worker every time stops after its max tries, in the dead-letter set."""

from __future__ import annotations

import signal
import time

from reliability_app import read_runs, rel_kill_worker, rel_slow
from reliability_support import wait_for

import asyncjobs
from asyncjobs import deadletter, keys
from asyncjobs.runtime import CRASH_RERUNS

LEASE_S = 2.0


async def test_kill_9_mid_job_reruns_on_another_worker_within_the_lease(rel_workers):
    a, b = rel_workers.start(), rel_workers.start()
    pids = {a.proc.pid: a, b.proc.pid: b}
    async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:
        handle = await client.enqueue(rel_slow, 1.0)
        first = await wait_for(lambda: read_runs(rel_workers.runlog), "the job to start", timeout=30)
        assert first[0][:2] == (handle.id, 1)
        victim = pids[first[0][2]]
        victim.signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.proc.wait(10)

        runs = await wait_for(lambda: (r := read_runs(rel_workers.runlog)) and len(r) >= 2 and r, "a re-run")
        recovery = time.monotonic() - killed_at
        result = await handle.result(timeout=30)
        info = await handle.info()

    survivor = next(p for pid, p in pids.items() if p is not victim)
    print(f"\nkill -9 recovery: job re-started {recovery:.2f}s after the kill (lease {LEASE_S:g}s)")
    assert runs[1][0] == handle.id and runs[1][1] == 2, runs  # the try count went up
    assert runs[1][2] == survivor.proc.pid
    assert result == f"done by {survivor.proc.pid}"
    assert info.status is asyncjobs.JobStatus.COMPLETE and info.tries == 2
    assert recovery < LEASE_S + 1.5, f"re-run took {recovery:.2f}s, lease is {LEASE_S}s"


async def test_job_that_kills_its_worker_every_time_is_dead_lettered_after_max_tries(rel_workers):
    # a supervisor (--processes 2) restarts each killed worker process
    rel_workers.start("asyncjobs", "--processes", "2", ASYNCJOBS_LEASE="1")
    max_tries = rel_kill_worker.opts.retries + 1 + CRASH_RERUNS
    async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:
        handle = await client.enqueue(rel_kill_worker)
        with_dead = await wait_for(lambda: client.redis.exists(keys.dead(handle.id)), "the dead letter", timeout=60)
        entry = await deadletter.get(client.redis, handle.id)
        status = await handle.status()
    runs = [r for r in read_runs(rel_workers.runlog) if r[0] == handle.id]
    assert with_dead
    assert [r[1] for r in runs] == list(range(1, max_tries + 1))  # each try ran once, then no more
    assert len({r[2] for r in runs}) == max_tries  # in a fresh worker process each time
    assert entry.function == "rel_kill_worker"
    assert f"max {max_tries} retries exceeded" in entry.reason
    assert status is asyncjobs.JobStatus.FAILED
