"""``python bench/workflow_bench.py [--quick]``: what a workflow node costs against a plain job,
on a private redis-server with one ``asyncjobs.Worker`` process (``bench.workerproc``). Not CI.

- parallel: N no-op jobs through ``enqueue_many`` vs a ``group`` of N no-op nodes (jobs/s,
  from the enqueue to the last result);
- sequential: M plain jobs enqueued one after another, each awaited, vs a ``chain`` of M steps
  (ms per step: a chain step is queued inside the call that ends the previous one);
- fan-in: K chords of 10 members, time from the last member's end (its result's finish time)
  to the callback's start (its claim), p50/p99;
- scale: a chord of 10,000 members: creation time, Redis memory per node while it waits
  (against a plain queued job), and the run to the callback.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import asyncjobs  # noqa: E402
from asyncjobs import chain, chord, group, keys  # noqa: E402
from asyncjobs.serialization import deserialize  # noqa: E402
from asyncjobs.testing import RedisServer  # noqa: E402
from bench.jobs import noop  # noqa: E402

QUICK = "--quick" in sys.argv
N = 1_000 if QUICK else 5_000
M = 100 if QUICK else 300
K = 50 if QUICK else 300
BIG = 2_000 if QUICK else 10_000


async def used_memory(client: asyncjobs.Client) -> int:
    return int((await client.redis.info("memory"))["used_memory"])


async def drain(client: asyncjobs.Client) -> None:
    """Wait until the queue is empty and nothing runs (polling: the bench's own bookkeeping)."""
    while await client.redis.zcard(keys.queue("default")) or await client.redis.keys("arq:in-progress:*"):
        await asyncio.sleep(0.01)


async def completed(client: asyncjobs.Client) -> int:
    return int(await client.redis.hget(keys.stats("default"), "complete") or 0)


async def until_completed(client: asyncjobs.Client, target: int) -> None:
    while await completed(client) < target:  # polling the totals: no per-job round trip
        await asyncio.sleep(0.005)


async def parallel(client: asyncjobs.Client) -> tuple[float, float]:
    target = await completed(client) + N
    started = time.perf_counter()
    await client.enqueue_many(asyncjobs.call(noop) for _ in range(N))
    await until_completed(client, target)
    plain = N / (time.perf_counter() - started)
    target += N
    started = time.perf_counter()
    await group([noop.si() for _ in range(N)]).enqueue(client)
    await until_completed(client, target)
    return plain, N / (time.perf_counter() - started)


async def sequential(client: asyncjobs.Client) -> tuple[float, float]:
    started = time.perf_counter()
    for _ in range(M):
        await (await client.enqueue(noop)).result(timeout=30)
    plain = (time.perf_counter() - started) / M * 1000
    started = time.perf_counter()
    wf = await chain(*[noop.si() for _ in range(M)]).enqueue(client)
    await wf.result(timeout=120)
    return plain, (time.perf_counter() - started) / M * 1000


async def fan_in(client: asyncjobs.Client) -> list[float]:
    delays = []
    for _ in range(K):
        wf = await chord([noop.si() for _ in range(10)], noop.si()).enqueue(client)
        await wf.result(timeout=30)
        ids = [n.job_id for n in (await wf.status()).nodes]
        results = await client.redis.mget([keys.result(i) for i in ids[:-1]])
        last_end = max(deserialize(r)["ft"] for r in results)
        started = int(await client.redis.hget(keys.state(ids[-1]), "started_ms"))
        delays.append(started - last_end)
    return delays


async def scale(client: asyncjobs.Client, server: RedisServer) -> dict[str, float]:
    await drain(client)
    before = await used_memory(client)
    await client.enqueue_many(asyncjobs.call(noop.options(queue="idle")) for _ in range(BIG))
    plain = (await used_memory(client) - before) / BIG
    await client.redis.delete(keys.queue("idle"))
    await client.redis.delete(*await client.redis.keys("arq:job:*"))
    # the 10,000-member chord, written while the worker is paused (its nodes wait or are queued)
    before = await used_memory(client)
    started = time.perf_counter()
    idle = noop.options(queue="idle")
    wf = await chord([idle.si() for _ in range(BIG)], noop.si()).enqueue(client)
    created = time.perf_counter() - started
    node = (await used_memory(client) - before) / (BIG + 1)
    await client.redis.delete(*await client.redis.keys("arq:job:*"), *await client.redis.keys("asyncjobs:node:*"))
    started = time.perf_counter()
    wf = await chord([noop.si() for _ in range(BIG)], noop.si()).enqueue(client)
    await wf.result(timeout=600)
    return {"created_s": created, "node_bytes": node, "plain_bytes": plain, "run_s": time.perf_counter() - started}


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp), appendonly=False)
        server.start()
        worker = subprocess.Popen(
            [sys.executable, "-m", "bench.workerproc", "ours", server.url, "100", "0.5", "0"],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with asyncjobs.connect(server.url) as client:
                await (await client.enqueue(noop)).result(timeout=30)  # the worker is up
                plain_rate, node_rate = await parallel(client)
                print(f"parallel ({N:,} no-op): plain {plain_rate:,.0f} jobs/s, group {node_rate:,.0f} nodes/s")
                plain_ms, step_ms = await sequential(client)
                print(f"sequential ({M} steps): plain enqueue+await {plain_ms:.2f} ms/job, chain {step_ms:.2f} ms/step")
                delays = await fan_in(client)
                print(
                    f"fan-in ({K} chords of 10): last member's end -> callback start p50 {pct(delays, 50):.0f} ms, "
                    f"p99 {pct(delays, 99):.0f} ms, max {max(delays):.0f} ms"
                )
                s = await scale(client, server)
                print(
                    f"scale (chord of {BIG:,}): created in {s['created_s']:.2f} s, {s['node_bytes']:.0f} B of Redis "
                    f"memory per waiting node (a plain queued job: {s['plain_bytes']:.0f} B), run {s['run_s']:.2f} s"
                )
        finally:
            worker.terminate()
            worker.wait(30)
            server.stop()


if __name__ == "__main__":
    asyncio.run(main())
