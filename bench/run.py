"""``python -m bench [--quick] [--repeat N]``: every scenario for asyncjobs and plain arq on one
private redis-server, each repeated, medians and ratios printed."""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import arq
import redis

from bench import scenarios as sc
from bench.server import PrivateRedis


@dataclass(frozen=True)
class Sizes:
    pickup: int = 200
    pickup_arq_default: int = 40  # arq sleeps up to 0.5 s per job: 40 jobs already take ~10 s
    round_trip: int = 200
    round_trip_arq: int = 20
    noop: int = 10_000
    io_jobs: int = 2_000
    io_sleep: float = 0.1
    io_concurrency: int = 500
    big_jobs: int = 10_000
    big_sleep: float = 1.0
    enqueue: int = 10_000
    memory: int = 10_000


QUICK = Sizes(
    pickup=30,
    pickup_arq_default=4,
    round_trip=30,
    round_trip_arq=3,
    noop=1_000,
    io_jobs=400,
    io_concurrency=100,
    big_jobs=1_000,
    big_sleep=0.2,
    enqueue=1_000,
    memory=1_000,
)


async def median_of(repeat: int, make: Callable[[], Awaitable[Any]]) -> Any:
    runs = [await make() for _ in range(repeat)]
    if isinstance(runs[0], dict):
        return {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    return statistics.median(runs)


async def collect(url: str, z: Sizes, repeat: int) -> dict[str, Any]:
    r: dict[str, Any] = {}
    async with sc.Env(url) as env:

        def step(name: str) -> None:
            print(f"  … {name}", file=sys.stderr, flush=True)

        step("pickup")
        r["pickup"] = await median_of(repeat, lambda: sc.pickup(env, "ours", z.pickup))
        r["pickup_arq"] = await median_of(1, lambda: sc.pickup(env, "arq", z.pickup_arq_default))
        r["pickup_arq_fast"] = await median_of(repeat, lambda: sc.pickup(env, "arq", z.pickup, 0.01))
        step("result round trip")
        r["rtt"] = await median_of(repeat, lambda: sc.round_trip(env, "ours", z.round_trip))
        r["rtt_arq"] = await median_of(1, lambda: sc.round_trip(env, "arq", z.round_trip_arq))
        step("no-op throughput")
        for e in ("ours", "arq"):
            r[f"noop_{e}"] = await median_of(repeat, lambda e=e: sc.burst(env, e, z.noop, 100, "noop"))
        step("I/O-bound")
        for e in ("ours", "arq"):
            r[f"io_{e}"] = await median_of(
                repeat, lambda e=e: sc.burst(env, e, z.io_jobs, z.io_concurrency, "nap", z.io_sleep)
            )
            r[f"big_{e}"] = await median_of(1, lambda e=e: sc.burst(env, e, z.big_jobs, z.big_jobs, "nap", z.big_sleep))
        step("enqueue")
        for e in ("ours", "arq"):
            r[f"enq_{e}"] = await median_of(repeat, lambda e=e: sc.enqueue_rate(env, e, z.enqueue))
            r[f"mem_{e}"] = await median_of(repeat, lambda e=e: sc.memory_per_job(env, e, z.memory))
        r["enq_many"] = await median_of(repeat, lambda: sc.enqueue_rate(env, "ours", z.enqueue, many=True))
    return r


def table(r: dict[str, Any], z: Sizes) -> list[str]:
    no, na, io, ia, bo, ba = r["noop_ours"], r["noop_arq"], r["io_ours"], r["io_arq"], r["big_ours"], r["big_arq"]
    rows = [
        ("pickup p50 (ms)", r["pickup"]["p50"], r["pickup_arq"]["p50"], r["pickup_arq_fast"]["p50"]),
        ("pickup p99 (ms)", r["pickup"]["p99"], r["pickup_arq"]["p99"], r["pickup_arq_fast"]["p99"]),
        ("result round trip p50 (ms)", r["rtt"]["p50"], r["rtt_arq"]["p50"], None),
        (f"no-op {z.noop} jobs @100 (jobs/s)", no["rate"], na["rate"], None),
        ("  worker CPU (µs/job)", no["cpu_us"], na["cpu_us"], None),
        ("  Redis commands/job", no["cmds"], na["cmds"], None),
        (f"{z.io_jobs}×sleep({z.io_sleep:g}) @{z.io_concurrency} wall (s)", io["wall"], ia["wall"], None),
        (f"{z.big_jobs}×sleep({z.big_sleep:g}) @{z.big_jobs} wall (s)", bo["wall"], ba["wall"], None),
        ("  peak RSS (MB)", bo["rss_mb"], ba["rss_mb"], None),
        (f"enqueue {z.enqueue} one by one (jobs/s)", r["enq_ours"], r["enq_arq"], None),
        (f"enqueue_many {z.enqueue} (jobs/s)", r["enq_many"], r["enq_arq"], None),
        ("Redis memory per queued job (B)", r["mem_ours"], r["mem_arq"], None),
    ]
    out = [f"{'scenario':44} {'asyncjobs':>12} {'arq':>12} {'arq poll 0.01':>14}"]
    for name, ours, theirs, fast in rows:
        f = "" if fast is None else f"{fast:14.2f}"
        out.append(f"{name:44} {ours:12.2f} {theirs:12.2f} {f}")
    out += [
        "",
        f"ratio pickup p50, arq / ours: {r['pickup_arq']['p50'] / r['pickup']['p50']:.1f}x"
        f" (arq poll 0.01: {r['pickup_arq_fast']['p50'] / r['pickup']['p50']:.1f}x)",
        f"ratio result round trip p50, arq / ours: {r['rtt_arq']['p50'] / r['rtt']['p50']:.1f}x",
        f"ratio no-op throughput, ours / arq: {no['rate'] / na['rate']:.2f}x",
        f"ratio worker CPU per job, arq / ours: {na['cpu_us'] / no['cpu_us']:.2f}x",
        f"ratio I/O-bound wall, arq / ours: {ia['wall'] / io['wall']:.2f}x"
        f" (ideal {z.io_jobs / z.io_concurrency * z.io_sleep:.2f}s)",
        f"ratio enqueue one by one, ours / arq: {r['enq_ours'] / r['enq_arq']:.2f}x",
        f"ratio enqueue_many / arq one by one: {r['enq_many'] / r['enq_arq']:.1f}x",
        f"ratio Redis memory per job, ours / arq: {r['mem_ours'] / r['mem_arq']:.2f}x",
    ]
    return out


def machine() -> str:
    return (
        f"python {platform.python_version()}, arq {arq.VERSION}, redis-py {redis.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.platform()}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, one run each (CI smoke test)")
    p.add_argument("--repeat", type=int, default=None, help="runs per scenario (default 3, --quick 1)")
    a = p.parse_args(argv)
    z = QUICK if a.quick else Sizes()
    repeat = a.repeat or (1 if a.quick else 3)
    t0 = time.monotonic()
    with PrivateRedis() as url:
        print(f"asyncjobs vs arq on a private redis-server ({url}); medians of {repeat} run(s)", flush=True)
        results = asyncio.run(collect(url, z, repeat))
    print("\n".join(table(results, z)))
    print(f"\n{machine()}; took {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
