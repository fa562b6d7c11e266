"""Redis Sentinel: ``redis+sentinel://`` URLs, and every process following a failover.

A real primary, a replica and three sentinels on loopback; an ``asyncjobs worker``, a plain
``arq`` worker (on a queue of its own) and an ``asyncjobs web`` subprocess and a client
enqueuing a steady stream of jobs; the primary is SIGKILLed. Every process must follow the
promoted replica without exiting."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import aiohttp
import pytest
import redis.asyncio
from redis.exceptions import RedisError
from reliability_app import read_runs, rel_work
from reliability_support import Workers, wait_for

import asyncjobs
from asyncjobs import JobStatus, connections, keys
from asyncjobs.config import redis_settings
from asyncjobs.errors import ConfigError
from asyncjobs.leases import close_sync, sync_client
from asyncjobs.testing import RedisSentinels, RedisServer, free_port

pytestmark = pytest.mark.timeout(90)


def test_sentinel_url_gives_arq_sentinel_settings():
    url = "redis+sentinel://:s3cret@10.0.0.1:26379,10.0.0.2/jobs/2?sentinel_password=other&socket_timeout=2"
    rs = redis_settings(url)
    assert rs is not None
    assert (rs.sentinel, rs.sentinel_master, rs.database) == (True, "jobs", 2)
    assert rs.host == [("10.0.0.1", 26379), ("10.0.0.2", 26379)]
    assert rs.password == "s3cret"
    assert "s3cret" not in connections.mask_url(url) and "other" not in connections.mask_url(url)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis+sentinel://h1:26379,h2:26379", "no service name"),
        ("redis+sentinel://h1,h2/mymaster/x", "not a number"),
        ("redis+sentinel://h1:port/mymaster", "not a number from 1 to 65535"),
        ("redis+sentinel://h1/mymaster?ssl_certfile=/x", "TLS options need rediss://"),
        ("redis://h1,h2/0", "several hosts are for redis.sentinel://"),
    ],
)
def test_bad_sentinel_urls_say_why(url, says):
    with pytest.raises(ConfigError, match=says):
        connections.validate_url(url)


@dataclass
class Stream:
    """A client enqueuing ``rel_work(0)`` jobs one after another, noting when each was
    acknowledged; enqueues that fail (the primary is gone) are counted and tried again."""

    client: asyncjobs.Client
    acked: list[tuple[str, float]] = field(default_factory=list)
    failures: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def run(self) -> None:
        while not self.stop.is_set():
            try:
                handle = await self.client.enqueue(rel_work, 0.0)
                self.acked.append((handle.id, time.monotonic()))
            except (RedisError, OSError, asyncjobs.AsyncJobsError):
                self.failures += 1
            await asyncio.sleep(0.01)  # a steady stream of about 100 jobs/s, not a burst


async def _ready(session: aiohttp.ClientSession, port: int) -> bool:
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
            return resp.status == 200
    return False


async def _drained(broker: connections.Broker, queue: str) -> bool:
    return await broker.zcard(keys.queue(queue)) == 0


async def test_every_process_follows_a_failover(tmp_path):
    group = RedisSentinels(tmp_path / "redis")
    group.start()
    workers = Workers(tmp_path, group.url)
    (tmp_path / "arq").mkdir()
    plain_workers = Workers(tmp_path / "arq", group.url)  # a queue and run log of its own
    try:
        worker = workers.start()
        plain = plain_workers.start("arq")
        web_port = free_port()
        web = workers.start_web(web_port)
        async with (
            asyncjobs.connect(group.url, default_queue=workers.queue) as client,
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3)) as http,
        ):
            await wait_for(lambda: _ready(http, web_port), "the web server to be ready")
            broker = client._broker
            assert broker is not None
            leases_client = sync_client(broker, socket_timeout=1.0)  # as the lease thread builds it
            stream = Stream(client)
            producer = asyncio.create_task(stream.run())
            ran = lambda: {r[0] for r in read_runs(workers.runlog)}  # noqa: E731
            plain_ran = lambda: {r[0] for r in read_runs(plain_workers.runlog)}  # noqa: E731
            on_plain = rel_work.options(queue=plain_workers.queue)
            before = {(await client.enqueue(on_plain, 0.0)).id for _ in range(5)}
            await wait_for(lambda: before <= plain_ran(), "the plain arq worker's first jobs to run")
            await wait_for(lambda: len(ran()) >= 50, "the first jobs to run")

            group.primary.kill()
            killed_at = time.monotonic()
            group.wait_for_failover()
            failover_s = time.monotonic() - killed_at
            # jobs acknowledged after the failover completed: the first one to run marks resumption
            await wait_for(
                lambda: any(t > killed_at + failover_s and i in ran() for i, t in stream.acked),
                "a job enqueued after the failover to run",
            )
            resumed_s = time.monotonic() - killed_at
            await wait_for(lambda: _ready(http, web_port), "the web server to be ready again")
            ready_s = time.monotonic() - killed_at
            after_plain = {(await client.enqueue(on_plain, 0.0)).id for _ in range(5)}
            await wait_for(lambda: after_plain <= plain_ran(), "the plain arq worker to run jobs again")
            plain_s = time.monotonic() - killed_at
            async with http.post(
                f"http://127.0.0.1:{web_port}/api/jobs",
                json={"function": "rel_work", "args": [0.0], "queue": workers.queue},
            ) as resp:
                assert resp.status == 202, await resp.text()
                via_web = (await resp.json())["job_id"]
            await wait_for(lambda: sum(t > killed_at + failover_s for _, t in stream.acked) >= 30, "more jobs")
            stream.stop.set()
            await producer

            after = [i for i, t in stream.acked if t > killed_at + failover_s]
            await wait_for(lambda: set(after) | {via_web} <= ran(), "every job enqueued after the failover to run")
            # a job acknowledged by the old primary but not yet copied to the replica is gone
            await wait_for(lambda: _drained(broker, workers.queue), "the queue to drain")
            lost = [i for i, _ in stream.acked if i not in ran()]
            statuses = {await client.job(i).status() for i in lost}
            line_port = broker._line._conn.port if broker._line and broker._line._conn else None
            leases_client.set("asyncjobs:test:sentinel", "1")  # reaches the new primary
            leases_port = leases_client.connection_pool.get_master_address()[1]
            close_sync(leases_client)
        alive = {"worker": worker.proc.poll() is None, "web": web.proc.poll() is None, "arq": plain.proc.poll() is None}
    finally:
        workers.close()
        plain_workers.close()
        group.stop()

    print(
        f"\nSentinel failover: primary SIGKILLed; sentinels promoted the replica in {failover_s:.2f}s; "
        f"jobs ran again {resumed_s:.2f}s, /readyz answered 200 {ready_s:.2f}s and the plain arq worker's "
        f"jobs ran {plain_s:.2f}s after the kill; "
        f"{len(stream.acked)} jobs acknowledged, {stream.failures} enqueue(s) refused during the failover, "
        f"{len(lost)} acknowledged job(s) lost to asynchronous replication (statuses: {statuses or '-'})"
    )
    assert alive == {"worker": True, "web": True, "arq": True}
    assert line_port == group.replica.port  # the client's enqueue line follows the failover too
    assert leases_port == group.replica.port  # and so does the lease thread's synchronous client
    assert statuses <= {JobStatus.NOT_FOUND}  # a lost job is gone, not stuck


async def test_durable_enqueue_waits_for_a_replica(tmp_path):
    primary = RedisServer(tmp_path / "p", appendonly=False)
    replica = RedisServer(tmp_path / "r", appendonly=False, replica_of=primary.port)
    for server in (primary, replica):
        server.dir.mkdir()
        server.start()
    try:
        on_replica = redis.asyncio.Redis(port=replica.port)
        await wait_for(lambda: _in_sync(on_replica), "the replica to sync")
        async with asyncjobs.connect(primary.url, durable=2.0) as client:
            handles = [await client.enqueue(rel_work, 0.0) for _ in range(20)]
            # acknowledged means on the replica too: read there, with no wait at all
            assert await on_replica.exists(*[keys.job(h.id) for h in handles]) == 20
            many = await client.enqueue_many(asyncjobs.call(rel_work, 0.0) for _ in range(50))
            assert await on_replica.exists(*[keys.job(h.id) for h in many if h]) == 50

            replica.stop()  # no replica left: a durable enqueue cannot be confirmed
            started = time.monotonic()
            with pytest.raises(asyncjobs.NotReplicated, match="within 2s") as caught:
                await client.enqueue(rel_work, 0.0)
            assert 1.5 < time.monotonic() - started < 10
            assert len(caught.value.job_ids) == 1
        async with asyncjobs.connect(primary.url) as plain:  # not durable: no wait, no error
            await plain.enqueue(rel_work, 0.0)
        await on_replica.aclose()
    finally:
        replica.stop()
        primary.stop()


async def _in_sync(replica: redis.asyncio.Redis) -> bool:
    with contextlib.suppress(RedisError):
        return (await replica.info("replication")).get("master_link_status") == "up"
    return False
