"""``python bench/memory_bench.py [--jobs 500000] [--quick]``: where a queued job's Redis memory
goes, on a private redis-server. Not part of CI (``--quick`` is its smoke test).

Writes ``jobs`` queued no-op jobs as the enqueue script writes them (``SET arq:job:<id> payload
[PX ttl]`` + ``ZADD arq:queue score id``, pipelined) in several layouts, flushing in between, and
prints Redis ``used_memory`` growth per job for each:

- as asyncjobs writes them now (22-character ids, the client's payload without ``t`` and, on the
  default queue, ``q``, no TTL by default), and plain arq (``uuid4().hex`` ids, its pickled
  payload, its one-day TTL);
- the former layouts, one change undone at a time: the payload with ``"t": null`` and
  ``"q": "default"``, then a one-day TTL, then 32-hex-digit ids.

Redis rounds every allocation up to a jemalloc size class (16, 32, 48, 64, ... bytes), and keeps
a string under 32 bytes with a one-byte header: that is why 22-character ids fit 32-byte
allocations for both the key name and the queue member, and a payload of 29-44 bytes takes a
64-byte allocation (with its 16-byte object header) where 28 bytes (the no-op's 26) take 48.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis.asyncio as aioredis
from arq.jobs import serialize_job

from asyncjobs import keys
from asyncjobs.connections import create_broker, new_job_id
from asyncjobs.registry import EnqueueOptions
from asyncjobs.serialization import serialize
from bench.server import PrivateRedis

QUEUE = keys.queue(keys.DEFAULT_QUEUE)
BATCH = 10_000


async def per_job(r: aioredis.Redis, n: int, make_id: Callable[[], str], payload: bytes, ttl_ms: int | None) -> float:
    """``used_memory`` growth per job for ``n`` jobs written in this layout (bytes)."""
    await r.flushall()
    before = int((await r.info("memory"))["used_memory"])
    now = int(time.time() * 1000)
    for start in range(0, n, BATCH):
        async with r.pipeline(transaction=False) as pipe:
            for _ in range(min(BATCH, n - start)):
                job_id = make_id()
                pipe.set(keys.job(job_id), payload, px=ttl_ms or None)
                pipe.zadd(QUEUE, {job_id: now})
            await pipe.execute()
    return (int((await r.info("memory"))["used_memory"]) - before) / n


async def main(url: str, n: int) -> None:
    broker = create_broker(url)
    enc = broker.encode_enqueue("noop", [], {}, EnqueueOptions(), job_id=new_job_id(), queue_key=QUEUE)
    _, payload, _, ttl, _ = enc.argv
    former = serialize({"t": None, "f": "noop", "a": [], "k": {}, "et": enc.now_ms, "q": keys.DEFAULT_QUEUE})
    arq_payload = serialize_job("noop", (), {}, None, enc.now_ms)
    print(
        f"no-op payload: asyncjobs {len(payload)} B (msgpack map), before {len(former)} B (with t and q), "
        f"arq {len(arq_payload)} B (pickle); job key TTL {ttl or 'none'} (ms)"
    )

    def hex32() -> str:
        return uuid4().hex

    day = 86_400_000  # arq's default expiry, asyncjobs' before it dropped it
    rows = [
        ("asyncjobs now: 22-character id, its payload, no TTL", new_job_id, payload, ttl),
        ("plain arq: 32-hex id, pickled payload, 1-day TTL", hex32, arq_payload, day),
        ("asyncjobs with the former payload (t and q)", new_job_id, former, ttl),
        ("asyncjobs with it and a 1-day TTL (former default)", new_job_id, former, day),
        ("asyncjobs with 32-hex ids too (the first batch)", hex32, former, day),
    ]
    print(f"{n:,} queued no-op jobs per layout; Redis used_memory growth per job")
    for name, make_id, body, px in rows:
        print(f"  {name:52s} {await per_job(broker, n, make_id, body, px):6.1f} B", flush=True)
    job_id = new_job_id()
    await broker.flushall()
    await broker.set(keys.job(job_id), payload, px=ttl or None)
    await broker.zadd(QUEUE, {job_id: enc.now_ms})
    usage, encoding = await broker.memory_usage(keys.job(job_id)), await broker.object("encoding", QUEUE)
    print(
        f"MEMORY USAGE arq:job:<id> {usage} B; queue encoding {encoding!r} "
        f"at 1 job (a queue over 128 jobs is a skiplist)"
    )
    await broker.aclose(close_connection_pool=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=500_000, help="queued jobs per layout")
    p.add_argument("--quick", action="store_true", help="20,000 jobs per layout (smoke test)")
    a = p.parse_args()
    with PrivateRedis() as redis_url:
        asyncio.run(main(redis_url, 20_000 if a.quick else a.jobs))
