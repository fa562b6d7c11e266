"""``python bench/backlog_bench.py [--small 10000] [--large 1000000] [--drain 20000] [--repeat 3]
[--file-jobs 100000] [--no-arq]``: what a growing backlog costs, on a private redis-server. Not
part of CI.

- load: ``enqueue_many`` of ``drain + large`` no-op jobs (jobs/s), and ``asyncjobs enqueue-many``
  on a ``file-jobs``-line JSON Lines file (jobs/s, from the command's start to its exit);
- memory: Redis ``used_memory`` growth per queued no-op job over the large load;
- claims: one worker process (concurrency 100) takes the first ``drain`` jobs off a queue with
  ``small`` and with ``large`` more jobs waiting behind them; jobs/s from its first claim to the
  ``drain``-th (the queue's size polled every 5 ms), median of ``repeat`` alternating runs (the
  queue topped up in between), and the large/small ratio. The small and large queues live in two
  databases of the same server, so both stay loaded.
- the same claims for plain arq's worker (poll delay 0.01 s, concurrency 100), its backlog written
  as ``enqueue_job`` writes it (pickled job + queue entry), pipelined.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import redis.asyncio as aioredis
from arq.jobs import serialize_job

import asyncjobs
from bench.jobs import noop
from bench.scenarios import spawn
from bench.server import PrivateRedis

ROOT = Path(__file__).resolve().parents[1]
QUEUE = "arq:queue"  # the default queue, for both engines
CHUNK = 10_000


async def used_memory(r: aioredis.Redis) -> int:
    return int((await r.info("memory"))["used_memory"])


async def load_ours(url: str, n: int) -> float:
    """Queue ``n`` no-op jobs with ``enqueue_many``; jobs/s."""
    async with asyncjobs.connect(url) as client:
        await client.enqueue(noop)  # connect and load the script outside the timing
        started = time.perf_counter()
        for i in range(0, n, CHUNK):  # chunks, so the handles do not pile up
            await client.enqueue_many(asyncjobs.call(noop) for _ in range(min(CHUNK, n - i)))
        return n / (time.perf_counter() - started)


async def load_arq(url: str, n: int) -> None:
    """Queue ``n`` jobs as arq's ``enqueue_job`` writes them (its pickled job and the queue entry)."""
    r = aioredis.from_url(url)
    try:
        for i in range(0, n, CHUNK):
            async with r.pipeline(transaction=False) as pipe:
                for _ in range(min(CHUNK, n - i)):
                    job_id, now = uuid4().hex, int(time.time() * 1000)
                    pipe.psetex(f"arq:job:{job_id}", 86_400_000, serialize_job("arq_noop", (), {}, None, now))
                    pipe.zadd(QUEUE, {job_id: now})
                await pipe.execute()
    finally:
        await r.aclose()


async def claim_rate(engine: str, url: str, drain: int) -> float:
    """One worker process takes ``drain`` jobs off the queue: jobs/s from its first claim."""
    r = aioredis.from_url(url)
    proc = spawn(engine, url, 100, poll_delay=0.01)
    try:
        initial = await r.zcard(QUEUE)
        deadline = time.monotonic() + 600
        first: tuple[float, int] | None = None
        while time.monotonic() < deadline:
            left = await r.zcard(QUEUE)
            now = time.perf_counter()
            if first is None and left < initial:
                first = (now, left)
            if first is not None and initial - left >= drain:
                return (first[1] - left) / (now - first[0])
            if proc.poll() is not None:
                raise RuntimeError(f"{engine} worker exited with {proc.returncode}")
            await asyncio.sleep(0.005)
        raise RuntimeError(f"{engine} worker did not take {drain} jobs in 600 s")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, 60)
        await r.aclose()


async def top_up(engine: str, url: str, size: int) -> None:
    r = aioredis.from_url(url)
    missing = size - await r.zcard(QUEUE)
    await r.aclose()
    if missing > 0:
        await (load_arq(url, missing) if engine == "arq" else load_ours(url, missing))


async def claims(engine: str, server: PrivateRedis, a: argparse.Namespace) -> dict[str, float]:
    """Load both backlogs (the large one's load rate and memory per job), then alternate drains."""
    sizes = {"small": a.small + a.drain, "large": a.large + a.drain}
    urls = {"small": server.server.url_of(1), "large": server.server.url_of(2)}
    out: dict[str, float] = {}
    r = aioredis.from_url(server.url)
    await r.flushall()
    await (load_arq(urls["small"], sizes["small"]) if engine == "arq" else load_ours(urls["small"], sizes["small"]))
    before = await used_memory(r)
    started = time.perf_counter()
    if engine == "arq":
        await load_arq(urls["large"], sizes["large"])
    else:
        out["load_rate"] = await load_ours(urls["large"], sizes["large"])
    print(f"  {engine}: loaded {sizes['large']:,} jobs in {time.perf_counter() - started:.1f}s", file=sys.stderr)
    out["bytes_per_job"] = (await used_memory(r) - before) / sizes["large"]
    await r.aclose()
    rates: dict[str, list[float]] = {"small": [], "large": []}
    for _ in range(a.repeat):
        for name in ("small", "large"):
            rates[name].append(await claim_rate(engine, urls[name], a.drain))
            await top_up(engine, urls[name], sizes[name])
    print(f"  {engine}: claims/s {rates}", file=sys.stderr)
    out["small"], out["large"] = statistics.median(rates["small"]), statistics.median(rates["large"])
    return out


async def cli_rate(url: str, n: int) -> tuple[float, str]:
    """``asyncjobs enqueue-many`` on an ``n``-line file, start to exit (the project's settings
    module with its example jobs); jobs/s and the command's own summary."""
    r = aioredis.from_url(url)
    await r.flushall()
    await r.aclose()
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as f:
        line = orjson.dumps({"function": "count_words", "args": ["a few words"]}) + b"\n"
        for i in range(0, n, CHUNK):
            f.write(line * min(CHUNK, n - i))
        f.flush()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOBS_")}
        env.update(REDIS_URL=url, ASYNCJOBS_EXAMPLES="1", PYTHONPATH=str(ROOT))
        cmd = [sys.executable, "-m", "asyncjobs", "enqueue-many", f.name, "--progress", "none"]
        started = time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
        return n / (time.perf_counter() - started), done.stdout.strip()


async def main(a: argparse.Namespace) -> None:
    server = PrivateRedis()
    with server as url:
        rate, summary = await cli_rate(url, a.file_jobs)
        print(f"  enqueue-many CLI: {summary}", file=sys.stderr)
        ours = await claims("ours", server, a)
        arq = None if a.no_arq else await claims("arq", server, a)
    print(f"load, enqueue_many, {a.large + a.drain:,} jobs   {ours['load_rate']:>10,.0f} jobs/s")
    print(f"load, asyncjobs enqueue-many, {a.file_jobs:,} lines   {rate:>10,.0f} jobs/s (process start to exit)")
    print(f"Redis memory per queued no-op job        {ours['bytes_per_job']:>10,.0f} B", end="")
    print(f"   (arq: {arq['bytes_per_job']:,.0f} B)" if arq else "")
    for name, figures in (("asyncjobs", ours), ("arq (poll 0.01)", arq)):
        if figures is None:
            continue
        ratio = figures["large"] / figures["small"]
        print(
            f"claims, {name}: backlog {a.small:,}: {figures['small']:,.0f} jobs/s, "
            f"backlog {a.large:,}: {figures['large']:,.0f} jobs/s, large/small {ratio:.2f}"
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--small", type=int, default=10_000, help="jobs waiting behind the drained ones, small backlog")
    p.add_argument("--large", type=int, default=1_000_000, help="the same, large backlog")
    p.add_argument("--drain", type=int, default=20_000, help="jobs the worker takes per measurement")
    p.add_argument("--repeat", type=int, default=3, help="drains per backlog (median)")
    p.add_argument("--file-jobs", type=int, default=100_000, help="lines of the enqueue-many file")
    p.add_argument("--no-arq", action="store_true", help="skip plain arq")
    asyncio.run(main(p.parse_args()))
