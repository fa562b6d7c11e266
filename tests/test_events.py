"""Job event streams from the client's one shared subscription (``EventHub.job_events``): no
per-job subscription and no per-stream polling; one slow safety poll for every stream."""

from __future__ import annotations

import asyncio
from typing import Any

from events_support import follow

import asyncjobs
from asyncjobs import events, keys

NEVER = 3600.0  # a poll interval that never comes within a test


async def test_many_followers_share_one_pattern_subscription(private_redis: Any) -> None:
    server = private_redis()
    async with asyncjobs.connect(server.url, poll_interval=NEVER) as client:
        handles = [await client.enqueue_call("count_words", ["a b"]) for _ in range(30)]
        followers = [await follow(h) for h in handles]
        r = client.redis
        assert await r.pubsub_numpat() == 1
        assert [c for c in await r.pubsub_channels() if c.startswith(b"asyncjobs:events:")] == []
        # events published now reach each follower through the one subscription
        async with r.pipeline(transaction=False) as pipe:
            for h in handles:
                pipe.publish(keys.events(h.id), events.encode(h.id, "complete"))
            await pipe.execute()
        async with asyncio.timeout(10):
            results = await asyncio.gather(*followers)
        assert [[e["event"] for e in evs] for evs in results] == [["complete"]] * 30
        assert await r.pubsub_numpat() == 0  # released with the last follower


async def test_the_shared_safety_poll_ends_a_stream_whose_job_vanished(private_redis: Any) -> None:
    server = private_redis()
    async with asyncjobs.connect(server.url, poll_interval=NEVER) as client:
        client.hub.check_interval = 0.05
        handle = await client.enqueue_call("count_words", ["a b"])
        looked = asyncio.Event()
        real_info = handle.info

        async def info() -> Any:
            rec = await real_info()
            looked.set()  # events() goes straight on to wait, with no await in between
            return rec

        handle.info = info  # type: ignore[method-assign]
        following = await follow(handle)
        async with asyncio.timeout(10):
            await looked.wait()
        await client.redis.delete(keys.job(handle.id))  # gone without an announcement
        async with asyncio.timeout(10):  # a per-stream poll would wait NEVER seconds
            assert await following == [{"job_id": handle.id, "event": "not_found"}]


async def test_tries_that_start_while_a_stream_subscribes_keep_their_order(
    client: asyncjobs.Client, monkeypatch: Any
) -> None:
    """A job may run a try, fail and start the next while ``events()`` reads its record: the
    record then says try 2, but the tries' own events are already queued, and they, not a
    ``started`` rebuilt from the record, come first and in order."""
    handle = await client.enqueue_call("count_words", ["a b"])
    read = handle.info
    story = [("started", {"try": 1}), ("progress", {"progress": 20}), ("retrying", {}), ("started", {"try": 2})]

    async def info_after_two_tries() -> Any:
        for kind, data in story:  # published after the subscription, before the record is read
            await client.redis.publish(keys.events(handle.id), events.encode(handle.id, kind, **data))
        rec = await read()
        rec.status, rec.start_ms, rec.tries = asyncjobs.JobStatus.IN_PROGRESS, 1, 2
        return rec

    monkeypatch.setattr(handle, "info", info_after_two_tries)
    seen = []
    async with asyncio.timeout(10):
        async for event in handle.events():
            seen.append((event["event"], event.get("try")))
            if len(seen) == len(story):
                break
    assert seen == [(kind, data.get("try")) for kind, data in story]
