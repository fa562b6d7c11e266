"""Workflows across worker processes (real redis-server): a chord of 1,000 whose workers are
killed with kill -9 runs its callback exactly once with every result in order; a plain arq
worker on the same queue runs nodes without breaking the graph."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from reliability_support import ROOT, WorkerProc, Workers, wait_for
from workflow_app import wf_add, wf_gather, wf_square

import asyncjobs
from asyncjobs import chain, chord, keys

APP = "workflow_app.WorkerSettings"


def start(rel: Workers, kind: str = "asyncjobs", *args: str) -> WorkerProc:
    """``asyncjobs worker workflow_app.WorkerSettings`` (or plain ``arq``) on the test queue."""
    if kind == "asyncjobs":
        cmd = [sys.executable, "-m", "asyncjobs", "worker", APP, *args]
    else:
        cmd = [sys.executable, "-m", "arq", APP, *args]
    log = rel.tmp / f"wf-worker-{len(rel.procs)}-{kind}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=rel.environ(), stdout=out, stderr=subprocess.STDOUT)
    wp = WorkerProc(proc, log, kind)
    rel.procs.append(wp)
    return wp


async def ended(client: asyncjobs.Client, wf: asyncjobs.Workflow) -> int:
    return int(await client.redis.hget(keys.workflow(wf.id), "ended") or 0)


async def test_chord_of_1000_with_kill_9_calls_back_exactly_once_with_results_in_order(rel_workers: Workers):
    n = 1000
    live = [start(rel_workers, "asyncjobs", "--concurrency", "20") for _ in range(3)]
    async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:
        wf = await chord([wf_square.s(i, pause=0.02) for i in range(n)], wf_gather.s()).enqueue(client)
        await wait_for(lambda: ended(client, wf), "the first members to end", timeout=60)
        live[0].kill()  # kill -9 while its members run and end
        await wait_for(lambda: _over(client, wf, n // 2), "half the members to end", timeout=60)
        live[1].kill()
        assert await ended(client, wf) < n  # killed in the middle
        start(rel_workers, "asyncjobs", "--concurrency", "20")
        assert await wf.result(timeout=90) == n
        callback = (await client.redis.lrange(keys.workflow_sinks(wf.id), 0, -1))[0].decode()
        assert await client.redis.get(f"calls:{callback}") == b"1"
        gathered = await client.redis.get(f"gathered:{callback}")
        assert gathered == ",".join(str(i * i) for i in range(n)).encode()
        status = await wf.status()
        assert status.state == "ended" and status.ended == n + 1 and status.failed == 0


async def _over(client: asyncjobs.Client, wf: asyncjobs.Workflow, count: int) -> bool:
    return await ended(client, wf) >= count


async def test_a_plain_arq_worker_on_the_same_queue_runs_nodes_without_breaking_the_graph(rel_workers: Workers):
    ours = start(rel_workers, "asyncjobs", "--concurrency", "4")
    plain = start(rel_workers, "arq")
    async with asyncjobs.connect(rel_workers.redis_url, default_queue=rel_workers.queue) as client:

        async def both_up() -> bool:  # both poll the queue before the workflow is created
            return "Starting worker for" in plain.output() and bool(await client.redis.zcard(keys.WORKERS))

        await wait_for(both_up, "both workers to start", timeout=60)
        steps = chain(wf_add.s(0, 1), *[wf_add.s(1) for _ in range(19)])
        wf = await chord([steps, *[wf_square.s(i, pause=0.05) for i in range(40)]], wf_gather.s()).enqueue(client)
        assert await wf.result(timeout=90) == 41
        callback = (await client.redis.lrange(keys.workflow_sinks(wf.id), 0, -1))[0].decode()
        gathered = (await client.redis.get(f"gathered:{callback}")).decode().split(",")
        assert gathered == ["20", *[str(i * i) for i in range(40)]]
        assert await client.redis.get(f"calls:{callback}") == b"1"
        pids = set()
        for node in (await wf.status()).nodes:
            pids.update(int(p) for p in await client.redis.lrange(f"ran:{node.job_id}", 0, -1))
        assert {ours.proc.pid, plain.proc.pid} <= pids, Path(plain.log).read_text()[-2000:]


async def test_a_redis_restart_mid_chord_calls_back_exactly_once(private_redis, tmp_path: Path):
    """Redis stopped (AOF fsynced) and started again while a chord's members run: the callback
    runs once, with every result in order."""
    server = private_redis()
    rel = Workers(tmp_path, server.url)
    n = 300
    try:
        procs = [start(rel, "asyncjobs", "--concurrency", "20") for _ in range(2)]
        async with asyncjobs.connect(server.url, default_queue=rel.queue) as client:
            wf = await chord([wf_square.s(i, pause=0.05) for i in range(n)], wf_gather.s()).enqueue(client)
            await wait_for(lambda: _over(client, wf, n // 4), "a quarter of the members to end", timeout=60)
            server.stop()
            # a worker noticed: the outage is real (an idle one may not need Redis meanwhile)
            await wait_for(lambda: any("lost Redis" in p.output() for p in procs), "a worker to notice", 60)
            server.start()  # same port, same dir: the AOF is replayed
            assert await wf.result(timeout=90) == n
            callback = (await client.redis.lrange(keys.workflow_sinks(wf.id), 0, -1))[0].decode()
            assert await client.redis.get(f"calls:{callback}") == b"1"
            gathered = await client.redis.get(f"gathered:{callback}")
            assert gathered == ",".join(str(i * i) for i in range(n)).encode()
    finally:
        rel.close()


async def test_a_graph_of_10000_nodes_is_created_in_a_few_calls_and_runs(private_redis, tmp_path: Path):
    server = private_redis()
    rel = Workers(tmp_path, server.url)
    n = 10_000
    try:
        start(rel, "asyncjobs", "--concurrency", "100")
        start(rel, "asyncjobs", "--concurrency", "100")
        async with asyncjobs.connect(server.url, default_queue=rel.queue) as client:
            await client.redis.config_resetstat()
            wf = await chord([wf_square.s(i) for i in range(n)], wf_gather.s()).enqueue(client)
            calls = (await client.redis.info("commandstats"))["cmdstat_evalsha"]["calls"]
            assert calls <= 2 * (n // 500 + 2)  # batches of nodes and one start (each maybe loaded)
            assert await wf.result(timeout=100) == n
            status = await wf.status()
            assert status.total == n + 1 and status.ended == n + 1 and status.failed == 0
    finally:
        rel.close()
