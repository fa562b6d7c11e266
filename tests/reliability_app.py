"""Job functions and worker settings for the fault tests (tests/test_reliability_*.py).

Worker subprocesses import this module (``asyncjobs worker reliability_app.WorkerSettings`` or
``arq reliability_app.WorkerSettings``, with ``tests/`` on ``PYTHONPATH``); settings come from
the environment through ``settings.load``. Every job start is appended to a run log
(``RELIABILITY_RUNLOG``, one ``<job id> <try> <pid>`` line per start, written with O_APPEND so a
``kill -9`` loses nothing already written): that log, not Redis, is how tests count runs.
Timed jobs add the wall-clock time to their start line and log their end too
(``<job id> <try> <pid> <time> end``).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

from asyncjobs import JobContext, Registry, job, worker_settings

_fd: int | None = None


def log_start(job_id: str, job_try: int, *extra: object) -> None:
    global _fd
    path = os.environ.get("RELIABILITY_RUNLOG")
    if not path:
        return
    if _fd is None:
        _fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, " ".join(map(str, (job_id, job_try, os.getpid(), *extra))).encode() + b"\n")


def read_runs(path: Path) -> list[tuple[str, int, int]]:
    """The run log as (job id, try, pid) tuples."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) in (3, 4):
            out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def read_timeline(path: Path) -> list[tuple[str, int, int, float, str]]:
    """The timed jobs' lines as (job id, try, pid, wall-clock time, "start" | "end")."""
    out = []
    for line in path.read_text().splitlines() if path.exists() else []:
        parts = line.split()
        if len(parts) in (4, 5):
            kind = parts[4] if len(parts) == 5 else "start"
            out.append((parts[0], int(parts[1]), int(parts[2]), float(parts[3]), kind))
    return out


@job(retries=3, backoff=0.2)
async def rel_work(ctx: JobContext, seconds: float) -> int:
    """Sleeps ``seconds``; returns the pid of the worker that ran it."""
    log_start(ctx.job_id, ctx.job_try)
    await asyncio.sleep(seconds)
    return os.getpid()


@job(retries=3, backoff=0.2)
async def rel_timed(ctx: JobContext, seconds: float) -> int:
    """Sleeps ``seconds``, logging when it started and ended; returns the worker's pid."""
    log_start(ctx.job_id, ctx.job_try, f"{time.time():.3f}")
    await asyncio.sleep(seconds)
    log_start(ctx.job_id, ctx.job_try, f"{time.time():.3f}", "end")
    return os.getpid()


@job(timeout=60)
async def rel_block_loop(ctx: JobContext, seconds: float) -> str:
    """Blocks its worker's event loop for ``seconds`` (``time.sleep`` inside ``async def``)."""
    log_start(ctx.job_id, ctx.job_try)
    time.sleep(seconds)
    return f"done by {os.getpid()}"


@job(retries=1)
async def rel_kill_worker(ctx: JobContext) -> None:
    """Kills its own worker process with SIGKILL, every time."""
    log_start(ctx.job_id, ctx.job_try)
    os.kill(os.getpid(), signal.SIGKILL)


@job(timeout=60)
async def rel_slow(ctx: JobContext, seconds: float) -> str:
    """A long job: started, then ``seconds`` of sleep (used for kill -9 and SIGTERM)."""
    log_start(ctx.job_id, ctx.job_try)
    await asyncio.sleep(seconds)
    return f"done by {os.getpid()}"


@job(timeout=120)
async def rel_slow_first_try(ctx: JobContext, first: float, later: float) -> str:
    """Sleeps ``first`` seconds on its first try and ``later`` on any other: a job that is
    surely still running when its worker shuts down, and quick when it runs again."""
    log_start(ctx.job_id, ctx.job_try)
    await asyncio.sleep(first if ctx.job_try == 1 else later)
    return f"done by {os.getpid()}"


@job(executor="process", timeout=60)
def rel_cpu(n: int) -> int:
    """CPU-bound: sums squares modulo a prime in a pure Python loop (in a worker's process pool)."""
    total = 0
    for i in range(n):
        total = (total + i * i) % 1_000_003
    return total


@job(executor="process", timeout=60)
def rel_cpu_for(cpu_seconds: float) -> tuple[int, float]:
    """CPU-bound for a fixed CPU time, whatever the machine's speed: sums squares in a pure
    Python loop until this process has used ``cpu_seconds`` of CPU; returns the iterations
    and the CPU time used."""
    start, total, i = time.process_time(), 0, 0
    while True:
        for _ in range(100_000):
            total = (total + i * i) % 1_000_003
            i += 1
        used = time.process_time() - start
        if used >= cpu_seconds:
            return i, used


def _spin(seconds: float, pidfile: str) -> int:
    Path(pidfile).write_text(str(os.getpid()))
    end, n = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        n += 1
    return n


@job(executor="process", timeout=60)
def rel_spin(seconds: float, pidfile: str) -> int:
    """Burns CPU for ``seconds`` in a pool process, after writing that process's pid to ``pidfile``."""
    return _spin(seconds, pidfile)


@job(executor="process", timeout=1)
def rel_spin_1s_timeout(seconds: float, pidfile: str) -> int:
    """:func:`rel_spin` with a 1 s timeout."""
    return _spin(seconds, pidfile)


@job(executor="process", retries=0)
def rel_fails_in_process(message: str) -> None:
    """Raises ``ValueError(message)`` in a pool process."""
    raise ValueError(message)


@job(executor="thread")
def rel_blocking_sleep(seconds: float) -> float:
    """Blocks its thread (``time.sleep``); the event loop stays free."""
    time.sleep(seconds)
    return seconds


def _settings() -> Any:
    from settings import load

    return load(os.environ)


SETTINGS = _settings()  # ``asyncjobs --settings reliability_app web`` reads SETTINGS and REGISTRY
REGISTRY = Registry(
    [
        rel_work,
        rel_timed,
        rel_block_loop,
        rel_kill_worker,
        rel_slow,
        rel_slow_first_try,
        rel_cpu,
        rel_cpu_for,
        rel_blocking_sleep,
        rel_spin,
        rel_fails_in_process,
    ]
)
WorkerSettings = worker_settings(REGISTRY, settings=SETTINGS)
