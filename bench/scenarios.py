"""The scenarios: each runs one engine once and returns its figures."""

from __future__ import annotations

import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from arq.connections import ArqRedis, RedisSettings, create_pool

import asyncjobs
from bench.jobs import ARQ_NAMES, nap, noop, stamp

ROOT = Path(__file__).resolve().parents[1]


class Env:
    """What every scenario needs: the URL, an asyncjobs client and a plain arq pool."""

    def __init__(self, url: str) -> None:
        self.url = url

    async def __aenter__(self) -> Env:
        self.client = await asyncjobs.connect(self.url).open()
        self.arq: ArqRedis = await create_pool(RedisSettings.from_dsn(self.url))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.close()
        await self.arq.aclose(close_connection_pool=True)

    async def flush(self) -> None:
        await self.arq.flushall()

    async def enqueue(self, engine: str, function: str, *args: Any) -> None:
        if engine == "arq":
            await self.arq.enqueue_job(ARQ_NAMES[function], *args)
        else:
            await self.client.enqueue_call(function, args)

    async def fill(self, engine: str, n: int, function: str, *args: Any) -> None:
        """Queue ``n`` jobs fast (not measured): enqueue_many for ours, concurrent enqueue_job for arq."""
        if engine == "arq":
            for i in range(0, n, 200):
                batch = [self.arq.enqueue_job(ARQ_NAMES[function], *args) for _ in range(min(200, n - i))]
                await asyncio.gather(*batch)
        else:
            fn = {"noop": noop, "nap": nap, "stamp": stamp}[function]
            await self.client.enqueue_many(asyncjobs.call(fn, *args) for _ in range(n))

    async def commands(self) -> int:
        stats = await self.arq.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_"))

    async def used_memory(self) -> int:
        return int((await self.arq.info("memory"))["used_memory"])


def spawn(
    engine: str, url: str, concurrency: int, poll_delay: float = 0.5, burst: bool = False
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bench.workerproc",
            engine,
            url,
            str(concurrency),
            str(poll_delay),
            "1" if burst else "0",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


@asynccontextmanager
async def idle_worker(env: Env, engine: str, poll_delay: float = 0.5) -> AsyncIterator[None]:
    """A running worker process, warmed up by one job."""
    proc = spawn(engine, env.url, 100, poll_delay)
    try:
        await env.enqueue(engine, "stamp", "bench:warm")
        if await env.arq.blpop(["bench:warm"], timeout=60) is None:
            raise RuntimeError(f"{engine} worker did not start")
        yield
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            print(f"  ! {engine} worker ignored SIGTERM for 15s; killed", file=sys.stderr)
            proc.kill()
            proc.wait()


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def pickup(env: Env, engine: str, n: int, poll_delay: float = 0.5) -> dict[str, float]:
    """Sequential jobs on an idle worker: enqueue -> the job function starts (ms)."""
    await env.flush()
    lat: list[float] = []
    async with idle_worker(env, engine, poll_delay):
        for _ in range(n):
            t0 = time.time()
            await env.enqueue(engine, "stamp", "bench:lat")
            _, started = await env.arq.blpop(["bench:lat"], timeout=30)
            lat.append((float(started) - t0) * 1000)
    return {"p50": statistics.median(lat), "p99": pct(lat, 0.99)}


async def round_trip(env: Env, engine: str, n: int) -> dict[str, float]:
    """enqueue -> await the result of a no-op job (ms)."""
    await env.flush()
    lat: list[float] = []
    async with idle_worker(env, engine):
        for _ in range(n):
            t0 = time.perf_counter()
            if engine == "arq":
                job = await env.arq.enqueue_job("arq_noop")
                assert job is not None
                await job.result(timeout=30)
            else:
                await (await env.client.enqueue(noop)).result(timeout=30)
            lat.append((time.perf_counter() - t0) * 1000)
    return {"p50": statistics.median(lat), "p99": pct(lat, 0.99)}


async def burst(env: Env, engine: str, n: int, concurrency: int, function: str, *args: Any) -> dict[str, float]:
    """``n`` queued jobs, one burst worker process: jobs/s, CPU µs/job, Redis commands/job, peak RSS."""
    await env.flush()
    await env.fill(engine, n, function, *args)
    before = await env.commands()
    proc = spawn(engine, env.url, concurrency, burst=True)
    out, _ = await asyncio.to_thread(proc.communicate, None, 600)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} worker exited with {proc.returncode}")
    stats = orjson.loads(out.strip().splitlines()[-1])
    cmds = await env.commands() - before - 1
    left = await env.arq.zcard("arq:queue")
    if left:
        raise RuntimeError(f"{engine} worker left {left} jobs in the queue")
    return {
        "wall": stats["wall"],
        "rate": n / stats["wall"],
        "cpu_us": stats["cpu"] / n * 1e6,
        "cmds": cmds / n,
        "rss_mb": stats["maxrss_kb"] / 1024,
    }


async def enqueue_rate(env: Env, engine: str, n: int, many: bool = False) -> float:
    """Jobs enqueued per second, one by one (or with enqueue_many)."""
    await env.flush()
    t0 = time.perf_counter()
    if many:
        await env.client.enqueue_many(asyncjobs.call(noop) for _ in range(n))
    else:
        for _ in range(n):
            await env.enqueue(engine, "noop")
    return n / (time.perf_counter() - t0)


async def memory_per_job(env: Env, engine: str, n: int) -> float:
    """Redis used_memory growth per queued no-op job (bytes)."""
    await env.flush()
    before = await env.used_memory()
    await env.fill(engine, n, "noop")
    return (await env.used_memory() - before) / n
