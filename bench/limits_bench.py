"""``python -m bench.limits_bench [--jobs 20000] [--limited 10000] [--repeat 3] [--cost-jobs 5000]``:
what flow control costs, on a private redis-server. Not part of CI.

The claim path is driven directly (``Claimer`` + ``Finisher``, the calls a worker makes: claim up
to 100, finish them in one batch), so the figures are the Redis side and the round trips, not a
worker process's scheduling.

- throughput: ``jobs`` unlimited no-op jobs claimed and finished (jobs/s), alone (``plain``),
  behind ``limited`` rate-limited jobs that are all due and not yet parked (``cold``: the claims
  park them on the way), and behind ``limited`` jobs already parked (``parked``: the steady
  state); median of ``repeat`` runs and the ratios to ``plain``;
- head of line: one unlimited job enqueued behind ``limited`` rate-limited ones, due and not yet
  parked: how long from its enqueue until a claim loop has it;
- cost: Redis CPU (``used_cpu_user + used_cpu_sys``) and Redis commands (``INFO commandstats``,
  which counts the commands scripts run) per job, for ``cost-jobs`` jobs of each kind through
  the same loop: unlimited, ``max_concurrency=50`` (each job parked and brought back once), and
  a rate limit they never hit (the gate's own cost) and one they do (scheduled and parked).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncjobs
from asyncjobs import keys
from asyncjobs.claiming import Claimer
from asyncjobs.finishing import Finisher
from bench.server import PrivateRedis

QUEUE = "bench"
ROOM = 100


def table(**entries: dict[str, Any]) -> str:
    return json.dumps(entries)


async def enqueue(client: asyncjobs.Client, function: str, n: int) -> None:
    calls = (asyncjobs.JobCall(function, default_queue=QUEUE) for _ in range(n))
    await client.enqueue_many(calls, batch_size=5000)


async def drain(client: asyncjobs.Client, claimer: Claimer, want: int, function: str | None = None) -> float:
    """Claim and finish until ``want`` jobs were taken; -> seconds."""
    finisher = Finisher(client.redis)
    q = keys.queue(QUEUE)
    taken, start = 0, time.perf_counter()
    while taken < want:
        got, earliest = await claimer.claim(ROOM)
        taken += len(got)
        if got:
            await asyncio.gather(*(finisher.finish(c.job_id, q, done=True) for c in got))
        elif not claimer.moved and earliest is not None:
            await asyncio.sleep(max(0.0, (earliest - time.time() * 1000) / 1000))
    return time.perf_counter() - start


async def throughput(url: str, jobs: int, limited: int, mode: str) -> float:
    async with asyncjobs.connect(url, queues=[QUEUE], default_queue=QUEUE) as client:
        await client.redis.flushdb()
        claimer = Claimer(client.redis, [keys.queue(QUEUE)], 30.0, "bench", limits=LIMITS)
        if mode != "plain":
            await enqueue(client, "slow_api", limited)
        if mode == "parked":  # park them first (a claim that only parks takes nothing)
            while (await claimer.claim(ROOM))[0] or claimer.moved:
                pass
        await enqueue(client, "noop", jobs)
        seconds = await drain(client, claimer, jobs + (1 if mode == "cold" else 0))
        return jobs / seconds


async def head_of_line(url: str, limited: int) -> float:
    async with asyncjobs.connect(url, queues=[QUEUE], default_queue=QUEUE) as client:
        await client.redis.flushdb()
        claimer = Claimer(client.redis, [keys.queue(QUEUE)], 30.0, "bench", limits=LIMITS)
        await enqueue(client, "slow_api", limited)
        start = time.perf_counter()
        h = await client.enqueue_call("noop", queue=QUEUE)
        while True:
            got, _ = await claimer.claim(ROOM)
            if any(c.job_id == h.id for c in got):
                return time.perf_counter() - start


async def redis_cost(url: str, function: str, lim: str, n: int) -> tuple[float, float]:
    """(Redis CPU µs, Redis commands) per job, for ``n`` jobs of ``function`` claimed and finished."""
    async with asyncjobs.connect(url, queues=[QUEUE], default_queue=QUEUE) as client:
        r = client.redis
        await r.flushdb()
        await enqueue(client, function, n)
        claimer = Claimer(r, [keys.queue(QUEUE)], 30.0, "bench", limits=lim)
        await r.config_resetstat()
        cpu0 = await _cpu(r)
        await drain(client, claimer, n)
        cpu = await _cpu(r) - cpu0
        stats = await r.info("commandstats")
        calls = sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config|resetstat"))
        return cpu * 1e6 / n, calls / n


async def _cpu(r: Any) -> float:
    info = await r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


LIMITS = table(slow_api={"r": [3_600_000, 0]}, capped={"c": 50}, fast={"r": [0.001, 1e9]}, rated={"r": [0.2, 0.8]})


async def main(args: argparse.Namespace) -> None:
    with PrivateRedis() as url:
        runs: dict[str, list[float]] = {"plain": [], "cold": [], "parked": []}
        for _ in range(args.repeat):
            for mode in runs:  # alternating, so load drifts hit every mode alike
                runs[mode].append(await throughput(url, args.jobs, args.limited, mode))
        med = {m: statistics.median(v) for m, v in runs.items()}
        print(f"unlimited claim+finish throughput, {args.jobs} jobs, median of {args.repeat}:")
        for m, v in med.items():
            ratio = v / med["plain"]
            print(
                f"  {m:<7} {v:>9,.0f} jobs/s  ({ratio:.0%} of plain)  runs: {', '.join(f'{x:,.0f}' for x in runs[m])}"
            )
        hol = [await head_of_line(url, args.limited) for _ in range(args.repeat)]
        print(
            f"head of line: an unlimited job behind {args.limited} due rate-limited ones claimed after "
            f"{statistics.median(hol) * 1000:.0f} ms (median; runs {', '.join(f'{x * 1000:.0f}' for x in hol)} ms)"
        )
        print(f"Redis cost per job ({args.cost_jobs} jobs each, claim + finish):")
        for label, fn in (
            ("unlimited", "noop"),
            ("max_concurrency=50", "capped"),
            ("rate limit, never hit", "fast"),
            ("rate 5000/s, hit", "rated"),
        ):
            cpu, cmds = await redis_cost(url, fn, LIMITS, args.cost_jobs)
            print(f"  {label:<22} {cpu:6.1f} µs Redis CPU  {cmds:5.1f} commands")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--limited", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--cost-jobs", type=int, default=5_000)
    asyncio.run(main(p.parse_args()))
