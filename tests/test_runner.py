"""``asyncjobs worker --processes N``: N supervised worker processes that run jobs; a dead one is
restarted, one that cannot start makes the supervisor give up, and none outlives a supervisor
killed with SIGKILL. Each test has a queue of its own (``rel_workers``), and every process it
started is killed at teardown, even when it fails."""

from __future__ import annotations

import contextlib
import signal
import time

import psutil
from reliability_app import rel_work
from reliability_support import wait_for

import asyncjobs


def live_children(pid: int) -> set[int]:
    """The pids of ``pid``'s live (not zombie) children."""
    out = set()
    with contextlib.suppress(psutil.NoSuchProcess):
        for c in psutil.Process(pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if c.status() != psutil.STATUS_ZOMBIE:
                    out.add(c.pid)
    return out


async def running_children(
    client: asyncjobs.Client, sup: int, n: int, exclude: frozenset[int] = frozenset()
) -> set[int]:
    """Wait until ``sup`` has ``n`` live children, none in ``exclude``, each registered as a worker."""

    async def check() -> set[int] | None:
        kids = live_children(sup)
        registered = {w.get("pid") for w in await client.workers()}
        return kids if len(kids) == n and not kids & exclude and kids <= registered else None

    return await wait_for(check, f"{n} registered worker processes", timeout=60, interval=0.05)


async def pids_running(client: asyncjobs.Client, jobs: int) -> set[int]:
    """Run ``jobs`` short jobs; the pids of the processes that ran them."""
    handles = [await client.enqueue(rel_work, 0.2) for _ in range(jobs)]
    return {await h.result(timeout=30) for h in handles}


def exited(pids: set[int]) -> set[int]:
    """Those of ``pids`` that have exited (gone, or a zombie: orphans are reaped by pid 1, which
    may take its time)."""
    out = set()
    for pid in pids:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                out.add(pid)
        except psutil.NoSuchProcess:
            out.add(pid)
    return out


def kill_all(pids: set[int]) -> None:
    for pid in pids:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


async def test_processes_run_jobs_in_n_children_and_restart_a_killed_one(rel_workers):
    sup = rel_workers.start("asyncjobs", "--processes", "2", "--concurrency", "1")
    async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:
        kids = await running_children(client, sup.proc.pid, 2)
        ran = await pids_running(client, 10)
        assert ran == kids  # both processes took jobs, and only they did

        victim = min(kids)
        psutil.Process(victim).kill()
        new = await running_children(client, sup.proc.pid, 2, exclude=frozenset({victim}))
        assert new - kids and kids - {victim} <= new
        assert new - kids <= await pids_running(client, 10)  # the restarted process runs jobs

    sup.signal(signal.SIGTERM)
    assert sup.proc.wait(30) == 0
    _, alive = psutil.wait_procs([psutil.Process(p) for p in new if psutil.pid_exists(p)], timeout=10)
    assert not alive


async def test_worker_processes_exit_when_the_supervisor_is_killed(rel_workers):
    sup = rel_workers.start("asyncjobs", "--processes", "2")
    kids: set[int] = set()
    try:
        async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:
            kids = await running_children(client, sup.proc.pid, 2)
            sup.kill()  # SIGKILL: no chance to stop its children
            t0 = time.monotonic()
            await wait_for(lambda: exited(kids) == kids, "the orphaned worker processes to exit", timeout=10)
            took = time.monotonic() - t0
            assert await wait_for(lambda: _unregistered(client, kids), "the orphans to unregister", timeout=10)
    finally:
        kill_all(kids)
    print(f"\nsupervisor killed: its {len(kids)} worker processes exited within {took:.2f}s")
    assert took < 5.0
    assert sup.output().count("the supervisor is gone; stopping") == 2
    assert sup.output().count("shutdown on SIGTERM") == 2  # stopped as on SIGTERM (no grace here)


async def _unregistered(client: asyncjobs.Client, pids: set[int]) -> bool:
    return not {w.get("pid") for w in await client.workers()} & pids


def test_supervisor_gives_up_on_a_process_that_cannot_start(rel_workers):
    t0 = time.monotonic()
    sup = rel_workers.start("asyncjobs", "--processes", "2", ASYNCJOBS_LEASE="soon")
    code = sup.proc.wait(90)
    took = time.monotonic() - t0
    errors = [line for line in sup.output().splitlines() if line.startswith("error: a worker process")]
    print(f"\nbad setting: supervisor exited {code} after {took:.1f}s: {errors[-1] if errors else sup.output()}")
    assert code == 2  # a configuration error, as a single worker would exit
    assert len(errors) == 1
    assert "failed to start 5 times in a row" in errors[0] and "ASYNCJOBS_LEASE" in errors[0]
    assert took < 60
    assert sup.output().count("restarting in") >= 4  # backing off: 0.5 s, 1 s, 2 s, 4 s
