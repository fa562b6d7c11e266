"""``python bench/scale_bench.py [--jobs 20000] [--processes 1,2,4] [--repeat 3] [--file-jobs 1000000]
[--enqueue-many-only] [--quick]``: how asyncjobs scales out, side by side with plain arq, on a private redis-server.
Not part of CI (``--quick`` is its smoke test).

- workers: ``jobs`` queued no-op jobs, drained by N burst worker processes at once (concurrency
  100 each) for N in ``processes``; jobs/s from the first finished job to the last (the queue's
  size polled every 5 ms: both engines keep a running job in the queue until it ends), the
  worker processes' CPU per job (their own ``getrusage``), and the **Redis CPU per job** over
  the same window (``INFO cpu``: ``used_cpu_sys`` + ``used_cpu_user``). One Redis core then
  serves at most 1 / (Redis CPU per job) jobs/s: the ceiling of one shard, and of a cluster of
  S shards S times that, if its queues spread evenly. Medians of ``repeat`` runs, engines
  alternating.
- enqueue-many: ``asyncjobs enqueue-many`` on a ``file-jobs``-line JSON Lines file with the
  progress bar drawn on a pseudo-terminal (so rich renders it), jobs/s from the command's start
  to its exit, median of ``repeat``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import redis.asyncio as aioredis

from bench.scenarios import Env, spawn
from bench.server import PrivateRedis

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "arq:queue"
ENGINES = {"ours": "asyncjobs", "arq": "arq"}


async def redis_cpu(r: aioredis.Redis) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


Mark = tuple[float, int, Any]  # (time, jobs left, a sample: the Redis CPU)


async def watch(
    left_now: Callable[[], Awaitable[int]],
    sample: Callable[[], Awaitable[Any]],
    jobs: int,
    procs: list[subprocess.Popen[bytes]],
) -> tuple[Mark | None, Mark | None]:
    """(time, jobs left, ``sample()``) at the first finished job and at the last, the jobs left
    polled every 5 ms until none are or every worker exited."""
    first: Mark | None = None
    last: Mark | None = None
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        left = await left_now()
        now = time.perf_counter()
        if first is None and left < jobs:
            first = (now, left, await sample())
        if first is not None and (last is None or left < last[1]):
            last = (now, left, await sample())
        if left == 0 or all(p.poll() is not None for p in procs):
            break
        await asyncio.sleep(0.005)
    return first, last


async def drain(env: Env, engine: str, jobs: int, processes: int) -> dict[str, float]:
    """``jobs`` no-op jobs, ``processes`` burst workers: jobs/s, worker and Redis CPU µs per job."""
    await env.flush()
    await env.fill(engine, jobs, "noop")
    r = env.arq
    procs = [spawn(engine, env.url, 100, burst=True) for _ in range(processes)]
    try:
        first, last = await watch(lambda: r.zcard(QUEUE), lambda: redis_cpu(r), jobs, procs)
        outs = [await asyncio.to_thread(p.communicate, None, 120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if any(p.returncode for p in procs) or first is None or last is None or last[1]:
        raise RuntimeError(f"{engine}: {processes} workers left {await r.zcard(QUEUE)} of {jobs} jobs")
    cpu = sum(orjson.loads(out.strip().splitlines()[-1])["cpu"] for out, _ in outs)
    done = first[1] - last[1]
    return {
        "rate": done / (last[0] - first[0]),
        "redis_us": (last[2] - first[2]) / done * 1e6,
        "worker_us": cpu / jobs * 1e6,
    }


async def workers(url: str, a: argparse.Namespace) -> dict[tuple[str, int], dict[str, float]]:
    out: dict[tuple[str, int], dict[str, float]] = {}
    async with Env(url) as env:
        for n in a.processes:
            runs: dict[str, list[dict[str, float]]] = {e: [] for e in ENGINES}
            for _ in range(a.repeat):
                for engine in ENGINES:
                    runs[engine].append(await drain(env, engine, a.jobs, n))
            for engine, figures in runs.items():
                print(f"  {engine}, {n} process(es): {[round(f['rate']) for f in figures]} jobs/s", file=sys.stderr)
                out[engine, n] = {k: statistics.median(f[k] for f in figures) for k in figures[0]}
    return out


def cli_once(url: str, path: str, lines: int) -> tuple[float, float]:
    """``asyncjobs enqueue-many path`` with its bar on a pseudo-terminal: jobs/s, start to exit,
    and the command's own CPU per job (µs; what it would take on a core of its own)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOBS_") and k != "REDIS_URL"}
    env.update(REDIS_URL=url, ASYNCJOBS_EXAMPLES="1", PYTHONPATH=str(ROOT), COLUMNS="100")
    master, slave = os.openpty()
    seen = bytearray()

    def read() -> None:  # drain the terminal, so the bar never blocks on a full buffer
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                return
            if not chunk:
                return
            seen.extend(chunk[-200:])

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    cmd = [sys.executable, "-m", "asyncjobs", "enqueue-many", path, "--progress", "bar"]
    started, before = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(cmd, cwd=ROOT, env=env, stderr=slave, stdout=subprocess.PIPE, text=True, check=False)
    seconds, after = time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    os.close(slave)
    reader.join(5)
    os.close(master)
    if done.returncode != 0 or f"enqueued {lines}," not in done.stdout:
        raise RuntimeError(f"enqueue-many exited {done.returncode}: {done.stdout[-300:]} {bytes(seen)[-300:]!r}")
    return lines / seconds, cpu / lines * 1e6


async def enqueue_many_cli(url: str, a: argparse.Namespace) -> list[tuple[float, float, float]]:
    """(jobs/s, the command's CPU µs/job, Redis CPU µs/job) of each run."""
    r = aioredis.from_url(url)
    rates = []
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as f:
        line = orjson.dumps({"function": "count_words", "args": ["a few words"]}) + b"\n"
        for i in range(0, a.file_jobs, 10_000):
            f.write(line * min(10_000, a.file_jobs - i))
        f.flush()
        for _ in range(a.repeat):
            await r.flushall()
            before = await redis_cpu(r)
            rate, cpu = await asyncio.to_thread(cli_once, url, f.name, a.file_jobs)
            rates.append((rate, cpu, (await redis_cpu(r) - before) / a.file_jobs * 1e6))
    await r.aclose()
    print(f"  enqueue-many: {[round(x[0]) for x in rates]} jobs/s", file=sys.stderr)
    return rates


def report(
    figures: dict[tuple[str, int], dict[str, float]], cli: list[tuple[float, float, float]], a: argparse.Namespace
) -> list[str]:
    out: list[str] = []
    if figures:
        out += workers_report(figures, a)
    if cli:
        rate, cpu, redis_us = (statistics.median(x[k] for x in cli) for k in range(3))
        out.append(
            f"asyncjobs enqueue-many, {a.file_jobs:,} lines, progress bar: {rate:,.0f} jobs/s "
            f"(median of {len(cli)}, process start to exit); its CPU {cpu:.1f} µs/job "
            f"(-> {1e6 / cpu:,.0f} jobs/s on a core of its own), Redis CPU {redis_us:.1f} µs/job"
        )
    return out


def workers_report(figures: dict[tuple[str, int], dict[str, float]], a: argparse.Namespace) -> list[str]:
    out = [f"{'no-op jobs, ' + str(a.jobs) + ' per run':34} {'asyncjobs':>10} {'arq':>10} {'ours/arq':>9}"]
    for n in a.processes:
        ours, arq = figures["ours", n], figures["arq", n]
        out.append(
            f"{f'{n} worker process(es), jobs/s':34} {ours['rate']:10,.0f} {arq['rate']:10,.0f} "
            f"{ours['rate'] / arq['rate']:8.2f}x"
        )
        out.append(f"{'  worker CPU, µs/job':34} {ours['worker_us']:10.1f} {arq['worker_us']:10.1f}")
        out.append(f"{'  Redis CPU, µs/job':34} {ours['redis_us']:10.1f} {arq['redis_us']:10.1f}")
    base = figures["ours", a.processes[0]]["rate"]
    for n in a.processes[1:]:
        out.append(f"scaling, asyncjobs {n} / {a.processes[0]} process(es): {figures['ours', n]['rate'] / base:.2f}x")
    redis_us = statistics.median(figures["ours", n]["redis_us"] for n in a.processes)
    per_core = 1e6 / redis_us
    out.append(
        f"Redis CPU per job (median over process counts): {redis_us:.1f} µs -> "
        f"one Redis core (one shard) serves at most {per_core:,.0f} jobs/s"
    )
    out.append("projected ceiling: " + ", ".join(f"{s} shard(s) {s * per_core:,.0f} jobs/s" for s in (1, 3, 6, 12)))
    return out


async def main(a: argparse.Namespace) -> None:
    with PrivateRedis() as url:
        print(f"scale bench on a private redis-server ({url}); medians of {a.repeat} run(s)", flush=True)
        figures = {} if a.enqueue_many_only else await workers(url, a)
        cli = await enqueue_many_cli(url, a) if a.file_jobs else []
    print("\n".join(report(figures, cli, a)))


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=20_000, help="no-op jobs per drain")
    p.add_argument("--processes", default="1,2,4", help="worker process counts, comma-separated")
    p.add_argument("--repeat", type=int, default=3, help="runs per figure (median)")
    p.add_argument("--file-jobs", type=int, default=1_000_000, help="lines of the enqueue-many file (0: skip)")
    p.add_argument("--quick", action="store_true", help="small sizes, one run (smoke test)")
    p.add_argument("--enqueue-many-only", action="store_true", help="only the enqueue-many figure (no worker drains)")
    a = p.parse_args(argv)
    a.processes = [int(n) for n in a.processes.split(",")]
    if a.quick:
        a.jobs, a.repeat, a.file_jobs, a.processes = 500, 1, 2_000, [1, 2]
    return a


if __name__ == "__main__":
    asyncio.run(main(parse()))
