"""kill -9 of a worker mid-job: the job re-runs on a live worker once its lease lapses (also
under load, with many jobs interrupted at once: each within lease + 2 s of the kill); a job
that kills its worker every time stops after its max tries, in the dead-letter set."""

from __future__ import annotations

import signal
import statistics
import time

import pytest
from reliability_app import read_runs, read_timeline, rel_kill_worker, rel_slow, rel_timed
from reliability_support import WorkerProc, Workers, wait_for

import asyncjobs
from asyncjobs import deadletter, keys
from asyncjobs.runtime import CRASH_RERUNS

LEASE_S = 2.0


# a long fallback poll must not delay it: the idle survivor wakes when the lease lapses
@pytest.mark.parametrize("poll_delay", ["0.2", "5"])
async def test_kill_9_mid_job_reruns_on_another_worker_within_the_lease(rel_workers, poll_delay):
    a, b = (rel_workers.start(ASYNCJOBS_POLL_DELAY=poll_delay) for _ in range(2))
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
    print(f"\nkill -9 recovery: job re-started {recovery:.2f}s after the kill (lease {LEASE_S:g}s, poll {poll_delay}s)")
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


# Under load, with the defaults: 5 s lease, 3 workers of concurrency 10, 300 jobs of 0.5-2.5 s (a
# backlog of about 15 s), workers killed while the backlog waits (one, one, two at once, one),
# each replaced at once, as a supervisor does.
LOAD = {"ASYNCJOBS_LEASE": "5", "ASYNCJOBS_POLL_DELAY": "0.5", "ASYNCJOBS_CONCURRENCY": "10"}
LOAD_LEASE_S, LOAD_JOBS = 5.0, 300
KILL_ROUNDS = (1, 1, 2, 1)


def started_pids(rel: Workers) -> set[int]:
    return {r[2] for r in read_timeline(rel.runlog) if r[4] == "start"}


async def kill_rounds(rel: Workers, live: list[WorkerProc]) -> list[tuple[int, float]]:
    """Kill workers round by round (each once it is running jobs), replacing each at once;
    the (pid, wall-clock time) of every kill."""
    kills = []
    for n in KILL_ROUNDS:
        await wait_for(lambda: {w.proc.pid for w in live} <= started_pids(rel), "every worker to run jobs")
        victims, live[:] = live[:n], live[n:]
        for v in victims:
            v.signal(signal.SIGKILL)
            kills.append((v.proc.pid, time.time()))
        for v in victims:
            v.proc.wait(10)
            live.append(rel.start(**LOAD))
    return kills


def recovery_delays(rel: Workers, kills: list[tuple[int, float]]) -> list[float]:
    """For every job a kill interrupted (started on the victim, never ended there): seconds from
    the kill to its next start on another worker."""
    timeline = read_timeline(rel.runlog)
    ended = {(job_id, job_try, pid) for job_id, job_try, pid, _, kind in timeline if kind == "end"}
    delays = []
    for victim, killed_at in kills:
        interrupted = {
            r[0] for r in timeline if r[2] == victim and r[4] == "start" and (r[0], r[1], victim) not in ended
        }
        for job_id in interrupted:
            restarts = [t for j, _, pid, t, kind in timeline if j == job_id and kind == "start" and t > killed_at]
            assert restarts, f"job {job_id} interrupted by the kill of {victim} never re-ran"
            delays.append(min(restarts) - killed_at)
    return delays


async def test_kill_9_under_load_reruns_every_interrupted_job_within_lease_plus_2s(rel_workers):
    live = [rel_workers.start(**LOAD) for _ in range(3)]
    async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:
        calls = [asyncjobs.call(rel_timed, 0.5 + 0.1 * (i % 21)) for i in range(LOAD_JOBS)]
        handles = [h for h in await client.enqueue_many(calls) if h is not None]
        kills = await kill_rounds(rel_workers, live)
        deadline = time.monotonic() + 45
        results = [await h.result(timeout=max(1.0, deadline - time.monotonic())) for h in handles]

    delays = recovery_delays(rel_workers, kills)
    p50, worst = statistics.median(delays), max(delays)
    print(
        f"\nkill -9 under load: {len(kills)} kills, {len(delays)} interrupted jobs re-started "
        f"p50 {p50:.2f}s, max {worst:.2f}s after the kill (lease {LOAD_LEASE_S:g}s); "
        f"{len(results)}/{LOAD_JOBS} complete"
    )
    assert len(handles) == len(results) == LOAD_JOBS  # 0 lost
    assert len(delays) >= len(kills) * 5, delays  # each kill interrupted several jobs
    assert worst <= LOAD_LEASE_S + 2.0, f"re-runs took p50 {p50:.2f}s, max {worst:.2f}s after the kill"
