"""``python bench/cluster_bench.py [--jobs 20000] [--processes 2] [--repeat 3] [--quick]``: cluster
mode against one Redis, in the same run. Not part of CI (``--quick`` is its smoke test).

The same work on two layouts, engines alternating: ``jobs`` no-op jobs spread evenly over three
queues, drained by ``processes`` burst ``asyncjobs`` worker processes that serve all three.

- ``one Redis``: three untagged queues on one private redis-server;
- ``cluster``: three tagged queues, one on each primary of a private 3-primary Redis Cluster
  (``redis+cluster://``).

Reported (medians of ``repeat``): jobs/s from the first finished job to the last, the worker
processes' CPU per job, the Redis CPU per job summed over every node, and the busiest node's
share of it: with queues spread over the shards each primary carries about a third, which is
what lets a cluster serve more than one Redis core can.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson
import redis.asyncio as aioredis

import asyncjobs
from asyncjobs import keys
from asyncjobs.testing import RedisClusterNodes
from bench.jobs import noop
from bench.scale_bench import watch
from bench.server import PrivateRedis

ROOT = Path(__file__).resolve().parents[1]
LAYOUTS = ("one Redis", "cluster")


def spawn(url: str, queues: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "bench.workerproc", "ours", url, "100", "0.5", "1", ",".join(queues)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


async def cpu(nodes: list[aioredis.Redis]) -> list[float]:
    out = []
    for r in nodes:
        info = await r.info("cpu")
        out.append(float(info["used_cpu_sys"]) + float(info["used_cpu_user"]))
    return out


async def drain(url: str, ports: list[int], queues: list[str], jobs: int, processes: int) -> dict[str, float]:
    nodes = [aioredis.Redis(port=p) for p in ports]
    try:
        for r in nodes:
            await r.flushall()
        async with asyncjobs.connect(url, queues=queues, default_queue=queues[0]) as client:
            calls = [asyncjobs.call(noop.options(queue=queues[i % len(queues)])) for i in range(jobs)]
            await client.enqueue_many(calls)

            async def left() -> int:
                return sum([int(await client.redis.zcard(keys.queue(q))) for q in queues])

            procs = [spawn(url, queues) for _ in range(processes)]
            first, last = await watch(left, lambda: cpu(nodes), jobs, procs)
            outs = [await asyncio.to_thread(p.communicate, None, 120) for p in procs]
        if first is None or last is None or last[1] or any(p.returncode for p in procs):
            raise SystemExit(f"{url}: the workers did not drain the queues")
        done = first[1] - last[1]
        per_node = [b - a for a, b in zip(first[2], last[2], strict=True)]
        worker_cpu = sum(orjson.loads(out.strip().splitlines()[-1])["cpu"] for out, _ in outs)
        return {
            "rate": done / (last[0] - first[0]),
            "worker_us": worker_cpu / jobs * 1e6,
            "redis_us": sum(per_node) / done * 1e6,
            "busiest": max(per_node) / sum(per_node) if sum(per_node) else 1.0,
        }
    finally:
        for r in nodes:
            await r.aclose()


async def main(a: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="asyncjobs-cluster-bench-") as tmp, PrivateRedis() as single_url:
        cluster = RedisClusterNodes(tmp)
        cluster.start()
        try:
            single_port = int(single_url.split(":")[-1].split("/")[0])
            setups = {
                "one Redis": (single_url, [single_port], ["b0", "b1", "b2"]),
                "cluster": (cluster.cluster_url, cluster.ports, cluster.queue_per_node("b")),
            }
            runs: dict[str, list[dict[str, float]]] = {k: [] for k in LAYOUTS}
            for _ in range(a.repeat):
                for layout in LAYOUTS:
                    url, ports, queues = setups[layout]
                    runs[layout].append(await drain(url, ports, queues, a.jobs, a.processes))
        finally:
            cluster.stop()
    med = {k: {f: statistics.median(r[f] for r in runs[k]) for f in runs[k][0]} for k in LAYOUTS}
    for k in LAYOUTS:
        print(f"  {k}: {[round(r['rate']) for r in runs[k]]} jobs/s", file=sys.stderr)
    print(f"\n{a.jobs} no-op jobs over 3 queues, {a.processes} worker process(es), medians of {a.repeat}\n")
    print("| layout | jobs/s | worker CPU µs/job | Redis CPU µs/job (all nodes) | busiest node's share |")
    print("|---|---:|---:|---:|---:|")
    for k in LAYOUTS:
        m = med[k]
        print(f"| {k} | {m['rate']:,.0f} | {m['worker_us']:.0f} | {m['redis_us']:.0f} | {m['busiest']:.0%} |")
    c, s = med["cluster"], med["one Redis"]
    print(
        f"\ncluster / one Redis: throughput {c['rate'] / s['rate']:.2f}×, worker CPU per job "
        f"{c['worker_us'] / s['worker_us']:.2f}×, Redis CPU per job {c['redis_us'] / s['redis_us']:.2f}×; "
        f"the busiest primary did {c['busiest']:.0%} of the cluster's Redis work"
    )


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="a smoke run: 600 jobs, once")
    a = p.parse_args(argv)
    if a.quick:
        a.jobs, a.repeat = 600, 1
    return a


if __name__ == "__main__":
    asyncio.run(main(parse()))
