"""The job runner (:class:`asyncjobs.running.JobRunner`) on its own, on fakeredis: built from
explicit collaborators, no Worker, no process. Jobs are enqueued in arq's format, claimed with
the real CLAIM script and run; each test asserts what the finish wrote. (Integration: the
engine's tests on a real redis-server.)"""

from __future__ import annotations

import ast
import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import fakeredis
import pytest
from arq.jobs import deserialize_result, serialize_job
from arq.utils import timestamp_ms
from arq.worker import Retry, func

import asyncjobs
from asyncjobs import deadletter, keys
from asyncjobs.claiming import Claimed, Claimer
from asyncjobs.finishing import Finisher
from asyncjobs.pool_ref import PoolRef
from asyncjobs.running import JobCounters, JobDefaults, JobHooks, JobRunner
from asyncjobs.runtime import Runtime
from asyncjobs.serialization import deserialize, serialize

QUEUE = keys.queue("default")
ROOT = Path(__file__).resolve().parents[1]


async def add(ctx: dict[str, Any], a: int, b: int) -> int:
    return a + b


async def boom(ctx: dict[str, Any]) -> None:
    raise ValueError("no")


async def again(ctx: dict[str, Any]) -> None:
    raise Retry(defer=60)


async def uses_resource(ctx: dict[str, Any]) -> str:
    return str(ctx["resource"])


@asyncjobs.job(name="runtime_boom", retries=0)
async def runtime_boom(ctx: asyncjobs.JobContext) -> None:
    raise LookupError("gone")


class Harness:
    """A runner wired to fakeredis, a claimer, and what the hooks saw."""

    def __init__(self, redis: Any, functions: list[Any]) -> None:
        self.redis = redis
        pool = PoolRef(lambda: redis)
        self.seen: list[tuple[str, str]] = []
        self.counters = JobCounters()
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.aborting: set[str] = set()
        self.claimer = Claimer(pool, [QUEUE], 5.0, "host:1:abc")
        self.runner = JobRunner(
            functions={f.name: f for f in map(func, functions)},
            hooks=JobHooks(self._hook("start"), self._hook("end"), self._hook("after")),
            defaults=JobDefaults(
                timeout_s=10, max_tries=3, allow_abort_jobs=True, serializer=serialize, deserializer=deserialize
            ),
            finisher=Finisher(pool),
            counters=self.counters,
            tasks=self.tasks,
            aborting=self.aborting,
            ctx={"redis": redis, "resource": "db-pool"},
            redis=pool,
        )

    def _hook(self, name: str) -> Any:
        async def hook(ctx: dict[str, Any]) -> None:
            self.seen.append((name, ctx["job_id"]))

        return hook

    async def enqueue(self, function: str, *args: Any, job_try: int | None = None) -> str:
        job_id = uuid.uuid4().hex
        payload = serialize_job(function, args, {}, job_try, timestamp_ms(), serializer=serialize)
        await self.redis.set(keys.job(job_id), payload)
        await self.redis.zadd(QUEUE, {job_id: timestamp_ms()})
        return job_id

    async def claim(self) -> Claimed:
        [claimed], _ = await self.claimer.claim(1)
        return claimed

    async def run_one(self, function: str, *args: Any) -> str:
        job_id = await self.enqueue(function, *args)
        await self.runner.run(await self.claim())
        return job_id

    async def result(self, job_id: str) -> Any:
        return deserialize_result(await self.redis.get(keys.result(job_id)), deserializer=deserialize)

    async def totals(self) -> dict[str, int]:
        return {k.decode(): int(v) for k, v in (await self.redis.hgetall(keys.stats("default"))).items()}


@pytest.fixture
async def make() -> AsyncIterator[Any]:
    redis = fakeredis.aioredis.FakeRedis()
    yield lambda functions: Harness(redis, functions)
    await redis.aclose()


async def test_a_job_completes_with_arqs_result_and_hooks(make: Any) -> None:
    h = make([add])
    job_id = await h.run_one("add", 2, 3)
    result = await h.result(job_id)
    assert (result.success, result.result, result.function, result.job_try) == (True, 5, "add", 1)
    assert h.counters == JobCounters(complete=1)
    assert h.seen == [("start", job_id), ("end", job_id), ("after", job_id)]
    assert await h.redis.exists(keys.job(job_id), keys.in_progress(job_id), keys.retry(job_id)) == 0
    assert await h.redis.zcard(QUEUE) == 0
    assert await h.totals() == {"complete": 1}
    assert h.tasks == {}


async def test_the_workers_ctx_reaches_the_function(make: Any) -> None:
    h = make([uses_resource])
    job_id = await h.run_one("uses_resource")
    assert (await h.result(job_id)).result == "db-pool"


async def test_a_failure_is_stored_counted_and_not_dead_lettered_without_the_runtime(make: Any) -> None:
    h = make([boom])
    job_id = await h.run_one("boom")
    result = await h.result(job_id)
    assert result.success is False and "no" in str(result.result)
    assert h.counters == JobCounters(failed=1)
    assert await h.totals() == {"failed": 1}
    assert await h.redis.zcard(keys.DEAD) == 0


async def test_a_final_failure_of_the_runtime_is_dead_lettered_with_its_end(make: Any) -> None:
    [function] = Runtime(asyncjobs.Registry([runtime_boom])).arq_functions()
    h = make([function])
    job_id = await h.run_one("runtime_boom")
    entry = await deadletter.get(h.redis, job_id)
    assert (entry.function, entry.tries, entry.error["type"]) == ("runtime_boom", 1, "LookupError")
    assert await h.totals() == {"failed": 1}


async def test_retry_goes_back_to_the_queue_deferred(make: Any) -> None:
    h = make([again])
    job_id = await h.enqueue("again")
    before = timestamp_ms()
    await h.runner.run(await h.claim())
    score = await h.redis.zscore(QUEUE, job_id)
    assert score is not None and score >= before + 60_000
    assert h.counters == JobCounters(retried=1)
    assert await h.redis.exists(keys.job(job_id), keys.retry(job_id)) == 2  # kept for the next try
    assert await h.redis.exists(keys.in_progress(job_id)) == 0
    assert await h.totals() == {}


async def test_an_unknown_function_fails_before_it_runs_with_a_dead_letter(make: Any) -> None:
    h = make([add])
    job_id = await h.run_one("nope")
    assert h.seen == []  # no hook runs for a job that never started
    assert h.counters == JobCounters(failed=1)
    assert (await deadletter.get(h.redis, job_id)).reason == "function 'nope' not found"
    assert (await h.result(job_id)).success is False
    assert await h.totals() == {"failed": 1}


async def test_too_many_tries_fail_before_the_function_runs(make: Any) -> None:
    h = make([add])
    job_id = await h.enqueue("add", 1, 1, job_try=4)  # max_tries is 3
    await h.runner.run(await h.claim())
    assert (await deadletter.get(h.redis, job_id)).reason == "max 3 retries exceeded"
    assert h.seen == []


async def test_an_abort_requested_before_start_ends_it_aborted(make: Any) -> None:
    h = make([add])
    job_id = await h.enqueue("add", 1, 1)
    await h.redis.zadd(keys.ARQ_ABORT, {job_id: timestamp_ms()})
    await h.runner.run(await h.claim())
    assert h.seen == []
    assert await h.totals() == {"aborted": 1}
    assert await h.redis.zcard(keys.DEAD) == 0


async def test_an_abort_of_a_running_job_goes_through_the_task_registry(make: Any) -> None:
    started = asyncio.Event()

    async def held(ctx: dict[str, Any]) -> None:
        started.set()
        await asyncio.sleep(60)

    h = make([func(held, name="held")])
    job_id = await h.enqueue("held")
    task = asyncio.create_task(h.runner.run(await h.claim()))
    async with asyncio.timeout(10):
        await started.wait()
    h.aborting.add(job_id)  # what arq's abort handling does with the registered task
    h.tasks[job_id].cancel()
    async with asyncio.timeout(10):
        await task
    assert h.aborting == set() and h.tasks == {}
    assert h.counters == JobCounters(failed=1)
    assert await h.totals() == {"aborted": 1}


def test_the_engine_parts_do_not_import_the_worker() -> None:
    """No import cycle: the parts get what they need from the worker, never the worker."""
    for name in ("running", "finishing", "housekeeping", "claiming", "leases", "lifecycle", "pool_ref"):
        tree = ast.parse((ROOT / "asyncjobs" / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "asyncjobs.worker" not in imported, name
