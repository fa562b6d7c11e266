"""Dead letters: final failures, unknown functions and undecodable payloads end up in the
dead-letter set with payload and error; they can be listed, retried and purged."""

from __future__ import annotations

import uuid

import pytest
import redis.asyncio as aioredis

from asyncjobs import JobFailed, JobStatus, job, keys
from asyncjobs.errors import DeadLetterNotFound
from asyncjobs.examples import count_words


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def test_exhausted_retries_dead_letter_then_retry_succeeds(client, start_worker):
    healthy = {"on": False}
    tries: list[int] = []

    @job(name=unique("fragile"), retries=1, backoff=0.05)
    async def fragile(ctx, n: int, *, label: str) -> str:
        tries.append(ctx.job_try)
        if not healthy["on"]:
            raise RuntimeError(f"downstream is down ({label})")
        return f"{label}:{n * 2}"

    await start_worker([fragile])
    handle = await client.enqueue(fragile, 21, label="x")
    with pytest.raises(JobFailed) as exc_info:
        await handle.result(timeout=10)
    assert exc_info.value.error_type == "RuntimeError"
    assert tries == [1, 2]

    total, entries = await client.dead_letters()
    assert total == 1
    entry = entries[0]
    assert (entry.job_id, entry.function, entry.args, entry.kwargs) == (handle.id, fragile.name, [21], {"label": "x"})
    assert entry.queue == "default" and entry.tries == 2
    assert entry.error["type"] == "RuntimeError"
    assert entry.error["message"] == "downstream is down (x)"
    assert "Traceback" in entry.error["traceback"]
    assert "2 tries" in entry.reason

    healthy["on"] = True
    again = await client.retry_dead(handle.id)
    assert again.id == handle.id
    assert await again.result(timeout=10) == "x:42"
    assert tries == [1, 2, 1]  # a fresh run, counted from one again
    assert (await client.dead_letters())[0] == 0
    with pytest.raises(DeadLetterNotFound):
        await client.retry_dead(handle.id)


async def test_unknown_function_is_dead_lettered_and_worker_keeps_running(client, start_worker):
    await start_worker([count_words])
    handle = await client.enqueue_call("no_such_function", [1], {"a": 2})
    with pytest.raises(JobFailed) as exc_info:
        await handle.result(timeout=10)
    assert "no_such_function" in exc_info.value.error_message
    assert "not found" in exc_info.value.error_message
    total, [entry] = await client.dead_letters()
    assert total == 1
    assert (entry.job_id, entry.function, entry.args, entry.kwargs) == (handle.id, "no_such_function", [1], {"a": 2})
    assert "no_such_function" in entry.error["message"]
    # the worker is still serving
    assert await (await client.enqueue(count_words, "still alive")).result(timeout=10) == 2


async def test_undecodable_payload_is_dead_lettered_and_worker_keeps_running(client, start_worker, redis_url):
    await start_worker([count_words])
    garbage = b"\xc1\xff\x00not msgpack"
    job_id = "garbage-" + uuid.uuid4().hex[:6]
    r = aioredis.from_url(redis_url)
    try:
        await r.set(keys.job(job_id), garbage)
        await r.zadd(keys.queue("default"), {job_id: 1})
        await r.publish(keys.wake("default"), "1")
    finally:
        await r.aclose()
    handle = client.job(job_id)
    with pytest.raises(JobFailed) as exc_info:
        await handle.result(timeout=10)
    assert "deserialize" in exc_info.value.error_message
    total, [entry] = await client.dead_letters()
    assert total == 1 and entry.job_id == job_id
    assert entry.raw == garbage
    assert entry.error["type"].endswith("DeserializationError")
    with pytest.raises(JobFailed, match="cannot be decoded"):
        await client.retry_dead(job_id)
    assert await (await client.enqueue(count_words, "next job runs")).result(timeout=10) == 3


async def test_purge(client, start_worker):
    @job(name=unique("doomed"))
    async def doomed(ctx, i: int) -> None:
        raise KeyError(i)

    await start_worker([doomed])
    handles = [await client.enqueue(doomed, i) for i in range(3)]
    for h in handles:
        with pytest.raises(JobFailed):
            await h.result(timeout=10)
    total, entries = await client.dead_letters(limit=2)
    assert total == 3 and len(entries) == 2
    assert await client.purge_dead() == 3
    assert await client.dead_letters() == (0, [])
    assert await handles[0].status() is JobStatus.FAILED  # the result itself stays
