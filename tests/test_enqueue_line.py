"""The enqueue line (one connection kept for one-by-one enqueues): concurrent use, a lost
connection, a reply lost after Redis ran the enqueue, an unknown script, and cancellation."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

import asyncjobs
from asyncjobs import DuplicateJob, keys
from asyncjobs.examples import count_words


async def test_concurrent_enqueues_all_land_once(client: Any) -> None:
    handles = await asyncio.gather(*(client.enqueue(count_words, str(i)) for i in range(300)))
    assert len({h.id for h in handles}) == 300
    assert await client.redis.zcard(keys.queue("default")) == 300
    assert client.redis._line is not None  # a real Redis broker has the line


@pytest.mark.own_redis  # CLIENT KILL acts on the whole server
async def test_a_killed_connection_is_replaced_and_nothing_is_lost(client: Any) -> None:
    first = await client.enqueue(count_words, "before")
    killed = await client.redis.execute_command("CLIENT", "KILL", "TYPE", "normal")
    assert killed >= 1
    second = await client.enqueue(count_words, "after")
    third = await client.enqueue(count_words, "and again")
    queued = {i.decode() for i in await client.redis.zrange(keys.queue("default"), 0, -1)}
    assert queued == {first.id, second.id, third.id}


async def test_a_reply_lost_after_redis_ran_the_enqueue_is_not_a_duplicate(client: Any, monkeypatch: Any) -> None:
    await client.enqueue(count_words, "warm up")  # the line's connection exists now
    conn = client.redis._line._conn
    real_read = conn.read_response
    lost = []

    async def read_then_fail(*a: Any, **kw: Any) -> Any:
        await real_read(*a, **kw)  # Redis ran the script...
        lost.append(True)
        await conn.disconnect()
        raise RedisConnectionError("connection lost while reading the reply")  # ...but the reply is lost

    monkeypatch.setattr(conn, "read_response", read_then_fail)
    handle = await client.enqueue(count_words, "reply lost")
    assert lost == [True]
    assert await client.redis.zscore(keys.queue("default"), handle.id) is not None
    monkeypatch.undo()
    with pytest.raises(DuplicateJob):  # a real duplicate is still one
        await client.enqueue(count_words.options(job_id=handle.id), "again")


@pytest.mark.own_redis  # SCRIPT FLUSH acts on the whole server
async def test_a_flushed_script_is_loaded_again(client: Any) -> None:
    await client.enqueue(count_words, "one")
    await client.redis.script_flush()
    handle = await client.enqueue(count_words, "two")
    assert await handle.status() == "queued"


@pytest.mark.own_redis  # CLIENT PAUSE acts on the whole server
async def test_a_cancelled_enqueue_leaves_no_stale_reply(client: Any) -> None:
    taken = await client.enqueue(count_words.options(job_id="taken"), "x")
    # hold every command for a moment, so the next enqueue is cancelled while it waits for its reply
    await client.redis.execute_command("CLIENT", "PAUSE", "300", "ALL")
    task = asyncio.create_task(client.enqueue(count_words.options(job_id="cancelled"), "x"))
    deadline = asyncio.get_running_loop().time() + 5
    while not client.redis._line.busy:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # were the cancelled call's reply (1, created) left on the connection, this would read it
    with pytest.raises(DuplicateJob):
        await client.enqueue(count_words.options(job_id=taken.id), "x")


@pytest.mark.own_redis  # SCRIPT FLUSH acts on the whole server
async def test_a_batch_on_the_line_survives_a_flushed_script_and_reports_taken_ids(client: Any) -> None:
    taken = await client.enqueue(count_words.options(job_id="taken-in-batch"), "x")
    await client.redis.script_flush()
    calls = [asyncjobs.call(count_words, str(i)) for i in range(50)]
    calls.insert(25, asyncjobs.call(count_words.options(job_id=taken.id), "again"))
    handles = await client.enqueue_many(calls)
    assert handles[25] is None
    assert all(h is not None for i, h in enumerate(handles) if i != 25)
    assert await client.redis.zcard(keys.queue("default")) == 51


async def test_a_batch_cut_off_mid_reply_is_neither_lost_nor_reported_duplicate(client: Any, monkeypatch: Any) -> None:
    await client.enqueue(count_words, "warm up")
    conn = client.redis._line._conn
    real_read = conn.read_response
    reads = []

    async def fail_on_the_fourth(*a: Any, **kw: Any) -> Any:
        reads.append(1)
        if len(reads) == 4:  # Redis ran the whole batch; the 4th reply onwards are lost
            await conn.disconnect()
            raise RedisConnectionError("connection lost mid-batch")
        return await real_read(*a, **kw)

    monkeypatch.setattr(conn, "read_response", fail_on_the_fourth)
    handles = await client.enqueue_many(asyncjobs.call(count_words, str(i)) for i in range(10))
    monkeypatch.undo()
    assert len(reads) == 4 and all(h is not None for h in handles)
    queued = await client.redis.zrange(keys.queue("default"), 0, -1)
    assert len(queued) == 11 and {h.id for h in handles} <= {i.decode() for i in queued}


def test_arguments_are_packed_as_redis_py_packs_them() -> None:
    from redis.asyncio.connection import Connection

    from asyncjobs.enqueue_line import EnqueueLine

    args = ["arq:queue", "id-1", b"\x00\xffpayload", 1_800_000_000_000, 86_400_000.5, "wake:é"]
    ours = EnqueueLine(pool=None)._pack("a" * 40, args[:1], args[1:])
    theirs = b"".join(Connection().pack_command("EVALSHA", "a" * 40, 1, *args))
    assert ours == theirs
