"""Deferral bounds, on a real redis-server: a past ``defer_until`` means now at the job's own
priority (never ahead of higher-priority jobs), and ``defer_until`` is bounded like ``defer_by``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from arq.utils import timestamp_ms

from asyncjobs import ConfigError, JobStatus, job, keys


@job
async def record(ctx, name: str) -> str:
    ctx["order"].append(name)
    return name


async def test_a_past_defer_until_is_now_at_its_own_priority(client, start_worker):
    before = timestamp_ms()
    urgent = await client.enqueue(record.options(priority=9), "urgent")
    ancient = await client.enqueue(record.options(defer_until=datetime(1, 1, 1, tzinfo=UTC)), "ancient")
    naive = await client.enqueue(record.options(defer_until=datetime(1, 1, 1)), "naive")
    later = await client.enqueue(record, "later")
    after = timestamp_ms()
    for handle in (ancient, naive):
        info = await handle.info()
        assert info.status is JobStatus.QUEUED and info.priority == 0, info
        assert before <= info.scheduled_ms <= after, info  # not 0001-01-01, not a negative time
    stats = (await client.queue_stats())[0]
    assert before <= stats.oldest_queued_ms <= after  # "oldest waiting": since just now
    order: list[str] = []
    await start_worker([record], max_jobs=1, ctx={"order": order})
    assert await later.result(timeout=10) == "later"
    assert await urgent.result(timeout=1) == "urgent"
    assert order == ["urgent", "ancient", "naive", "later"]


async def test_defer_until_is_bounded_like_defer_by(client):
    with pytest.raises(ConfigError, match=r"defer_by 3\.2e\+07 s is too far ahead: at most 31622400 s") as e:
        await client.enqueue_call("record", ["x"], defer_by=32_000_000)
    assert e.value.key == "defer_by"
    for when in (datetime(9999, 1, 1, tzinfo=UTC), datetime.now(UTC) + timedelta(days=367)):
        with pytest.raises(ConfigError, match=r"defer_until .* is too far ahead: at most 31622400 s") as e:
            await client.enqueue(record.options(defer_until=when), "x")
        assert e.value.key == "defer_until"
    assert await client.redis.zcard(keys.queue("default")) == 0
    ok = await client.enqueue(record.options(defer_until=datetime.now(UTC) + timedelta(days=365)), "x")
    assert (await ok.info()).status is JobStatus.DEFERRED
