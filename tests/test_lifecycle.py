"""One end-of-job path (:mod:`asyncjobs.lifecycle`): every way a job ends — complete, failed
after its retries, failed before it ran, aborted while queued, aborted while running; on the
engine and, where it applies, under a plain arq worker — publishes the same terminal event,
counts once in its queue's totals, names the job once on the done channel, and reaches the
``release``/``on_end`` hooks. The hooks are empty in the shipped scripts; here the scripts are
rebuilt (``scripts.build``) with hooks that record into Redis, so the test sees every call."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from arq.worker import Worker as ArqWorker
from arq.worker import get_kwargs
from redis.asyncio import Redis

import asyncjobs
from asyncjobs import JobAborted, JobFailed, Settings, deadletter, job, keys, scripts, worker_settings
from asyncjobs.examples import count_words
from asyncjobs.finishing import Finisher
from asyncjobs.lifecycle import JobEnd, JobRun, Outcome, plain_end_args

RELEASED = "asyncjobs:test:released"  # list: every release(id, q) call, as "id q"
ENDED = "asyncjobs:test:ended"  # list: every on_end(id, q, outcome) call, as "id outcome"
RECORDING_HOOKS = f"""
local function release(id, q)
  redis.call('RPUSH', '{RELEASED}', id .. ' ' .. q)
end
local function on_end(id, q, outcome)
  redis.call('RPUSH', '{ENDED}', id .. ' ' .. outcome)
end
"""
EVENT_FIELDS = {"job_id", "event", "ts", "function"}


@pytest.fixture
def recording_hooks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every script that claims or ends a job, rebuilt with the recording hooks (before any
    worker or client of the test registers them)."""
    for name, source in scripts.build(RECORDING_HOOKS).items():
        monkeypatch.setattr(scripts, name, source)


class Watch:
    """Every job event and done-channel message, on a connection of its own."""

    def __init__(self, redis: Redis) -> None:
        self.redis = redis
        self.pubsub = redis.pubsub()
        self.events: list[dict[str, Any]] = []
        self.done: list[str] = []

    async def start(self) -> None:
        await self.pubsub.psubscribe(keys.EVENTS_PATTERN)
        await self.pubsub.subscribe(keys.DONE_CHANNEL)
        confirmed = 0
        async with asyncio.timeout(10):
            while confirmed < 2:
                msg = await self.pubsub.get_message(timeout=1)
                confirmed += msg is not None and msg["type"] in ("subscribe", "psubscribe")

    async def sync(self) -> None:
        """Read until a marker published now comes back: everything published before is in."""
        marker = f"marker-{uuid.uuid4().hex}"
        await self.redis.publish(keys.DONE_CHANNEL, orjson.dumps([marker]))
        async with asyncio.timeout(10):
            while True:
                msg = await self.pubsub.get_message(timeout=1)
                if msg is None:
                    continue
                data = orjson.loads(msg["data"])
                if msg["type"] == "pmessage":
                    self.events.append(data)
                elif marker in data:
                    return
                else:
                    self.done += data

    def ends_of(self, job_id: str) -> list[dict[str, Any]]:
        return [e for e in self.events if e["job_id"] == job_id and e["event"] in ("complete", "failed", "aborted")]


@pytest.fixture
async def watch(redis_url: str) -> AsyncIterator[Watch]:
    redis = Redis.from_url(redis_url)
    w = Watch(redis)
    await w.start()
    yield w
    await w.pubsub.aclose()
    await redis.aclose()


def jobs(suffix: str) -> tuple[Any, Any, asyncio.Event]:
    """A job that fails every try (one retry), and one that waits to be aborted."""
    started = asyncio.Event()

    @job(name=f"boom_{suffix}", retries=1, backoff=0)
    async def boom(ctx: Any) -> None:
        raise ValueError("no")

    @job(name=f"held_{suffix}")
    async def held(ctx: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    return boom, held, started


async def totals(redis: Redis) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in (await redis.hgetall(keys.stats("default"))).items()}


async def hook_calls(redis: Redis, key: str, job_id: str) -> list[str]:
    return [c.decode().split(" ", 1)[1] for c in await redis.lrange(key, 0, -1) if c.decode().split(" ")[0] == job_id]


async def end_each_way(client: asyncjobs.Client, suffix: str, started: asyncio.Event, boom: Any, held: Any) -> dict:
    """End one job each way a worker can take part in; -> {way: (job id, outcome)}."""
    ways: dict[str, tuple[str, Outcome]] = {}
    h = await client.enqueue(count_words, "a b")
    assert await h.result(timeout=10) == 2
    ways["complete"] = (h.id, Outcome.COMPLETE)
    h = await client.enqueue(boom)
    with pytest.raises(JobFailed):
        await h.result(timeout=10)
    ways["failed after retries"] = (h.id, Outcome.FAILED)
    h = await client.enqueue(count_words.options(defer_by=600), "later")
    assert await h.abort(timeout=5) is True
    ways["aborted while queued"] = (h.id, Outcome.ABORTED)
    h = await client.enqueue(held)
    async with asyncio.timeout(10):
        await started.wait()
    assert await h.abort(timeout=10) is True
    with pytest.raises(JobAborted):
        await h.result(timeout=1)
    ways["aborted while running"] = (h.id, Outcome.ABORTED)
    return ways


async def assert_one_end_each(client: asyncjobs.Client, watch: Watch, ways: dict, before: dict[str, int]) -> None:
    await watch.sync()
    counted: dict[str, int] = {}
    for way, (job_id, outcome) in ways.items():
        [event] = watch.ends_of(job_id)
        assert set(event) == EVENT_FIELDS and event["event"] == outcome.value, way
        assert isinstance(event["ts"], int) and event["function"], way
        assert watch.done.count(job_id) == 1, way
        assert await hook_calls(client.redis, ENDED, job_id) == [outcome.value], way
        assert await hook_calls(client.redis, RELEASED, job_id), way
        counted[outcome.value] = counted.get(outcome.value, 0) + 1
        dead = await client.redis.exists(keys.dead(job_id))
        assert dead == (outcome is Outcome.FAILED), way
    after = await totals(client.redis)
    assert {k: after.get(k, 0) - before.get(k, 0) for k in after} == counted


@pytest.mark.usefixtures("recording_hooks")
async def test_every_way_the_engine_ends_a_job_writes_one_end(redis_url: str, start_worker: Any, watch: Watch) -> None:
    suffix = uuid.uuid4().hex[:8]
    boom, held, started = jobs(suffix)
    async with asyncjobs.connect(redis_url) as client:
        await start_worker([count_words, boom, held])
        ways = await end_each_way(client, suffix, started, boom, held)
        h = await client.enqueue_call("no_such_function")  # fails before it runs
        with pytest.raises(JobFailed):
            await h.result(timeout=10)
        ways["failed before it ran"] = (h.id, Outcome.FAILED)
        await assert_one_end_each(client, watch, ways, {})
        # the retry released what its claim took too, and ended once
        boom_id = ways["failed after retries"][0]
        assert len(await hook_calls(client.redis, RELEASED, boom_id)) >= 2


@pytest.mark.usefixtures("recording_hooks")
async def test_every_way_a_plain_arq_worker_ends_a_job_writes_the_same_end(
    redis_url: str, plain_arq_worker: Any, watch: Watch
) -> None:
    suffix = uuid.uuid4().hex[:8]
    boom, held, started = jobs(suffix)
    async with asyncjobs.connect(redis_url) as client:
        await plain_arq_worker([count_words, boom, held])
        ways = await end_each_way(client, suffix, started, boom, held)
        await assert_one_end_each(client, watch, ways, {})


@pytest.mark.usefixtures("recording_hooks")
async def test_an_end_sent_again_counts_and_announces_once(redis_url: str, watch: Watch) -> None:
    """A lost reply: the same end call is sent twice. The second releases again (the hook is
    idempotent) but counts, announces and dead-letters nothing."""
    async with asyncjobs.connect(redis_url) as client:
        redis = client.redis
        finished = await client.enqueue(count_words, "x")
        finisher = Finisher(redis)
        end = JobEnd(finished.id, keys.queue("default"), Outcome.COMPLETE, "count_words")
        for _ in range(2):
            await finisher.finish(finished.id, end.queue_key, done=True, end=end)

        plain_id = f"plain-{uuid.uuid4().hex}"  # as a plain arq worker's after_job_end sends it
        entry = deadletter.encode_entry(
            job_id=plain_id, function="f", args=[], kwargs={}, queue="default", tries=1, reason="r", error={}
        )
        plain = JobEnd(plain_id, keys.queue("default"), Outcome.FAILED, "f", entry)
        end_plain = redis.register_script(scripts.END_PLAIN)
        args = plain_end_args(plain, JobRun(started_ms=12345))
        assert [await end_plain(keys=[], args=args) for _ in range(2)] == [1, 0]

        queued = await client.enqueue(count_words.options(defer_by=600), "later")
        rec = await queued.info()
        assert [await queued._abort_queued(rec) for _ in range(2)] == [b"aborted", b"missing"]

        await watch.sync()
        for job_id in (finished.id, plain_id, queued.id):
            assert len(watch.ends_of(job_id)) == 1, job_id
            assert watch.done.count(job_id) == 1, job_id
            assert len(await hook_calls(redis, ENDED, job_id)) == 1, job_id
        assert len(await hook_calls(redis, RELEASED, finished.id)) == 2
        assert len(await hook_calls(redis, RELEASED, plain_id)) == 2
        assert await totals(redis) == {"complete": 1, "failed": 1, "aborted": 1}
        assert await redis.zcard(keys.DEAD) == 1


async def test_a_lapsed_lease_put_back_by_the_claim_is_released(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, source in scripts.build(RECORDING_HOOKS).items():
        monkeypatch.setattr(scripts, name, source)
    from asyncjobs.claiming import Claimer

    async with asyncjobs.connect(redis_url) as client:
        handle = await client.enqueue(count_words, "x")
        queue = keys.queue("default")
        dead_worker = Claimer(client.redis, [queue], 0.05, "dead-worker")
        [claimed], _ = await dead_worker.claim(1)
        assert claimed.job_id == handle.id
        live = Claimer(client.redis, [queue], 5.0, "live-worker")
        deadline = asyncio.get_running_loop().time() + 10
        while not (found := (await live.claim(1))[0]):  # due again once the lease lapses
            assert asyncio.get_running_loop().time() < deadline, "the lapsed job was not claimed again"
            await asyncio.sleep(0.02)
        assert found[0].job_id == handle.id and found[0].job_try == 2
        assert await hook_calls(client.redis, RELEASED, handle.id) == [queue]


async def test_a_plain_arq_worker_writes_the_dead_letter_before_the_failed_result(redis_url: str) -> None:
    """arq stores a failed result before ``after_job_end`` runs: the dead letter must already
    be there (a worker killed in between must not leave a final failure without its record)."""
    suffix = uuid.uuid4().hex[:8]
    boom, _held, _started = jobs(suffix)
    seen: dict[str, list[bool]] = {}

    async def on_job_end(ctx: dict[str, Any]) -> None:  # arq: after the function, before its result
        redis = ctx["redis"]
        seen.setdefault(ctx["job_id"], []).append(bool(await redis.exists(keys.dead(ctx["job_id"]))))

    cls = worker_settings([boom], settings=Settings(redis_url=redis_url, poll_delay=0.05))
    w = ArqWorker(**{**get_kwargs(cls), "handle_signals": False, "burst": True, "on_job_end": on_job_end})
    async with asyncjobs.connect(redis_url) as client:
        handle = await client.enqueue(boom)
        try:
            async with asyncio.timeout(30):
                await w.async_run()
        finally:
            if w._pool is not None:
                await w._pool.aclose(close_connection_pool=True)
        with pytest.raises(JobFailed):
            await handle.result(timeout=10)
        assert seen == {handle.id: [False, True]}  # the retried try has none, the last one has it
        assert (await deadletter.get(client.redis, handle.id)).job_id == handle.id
