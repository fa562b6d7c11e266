"""The claim: a job whose lease lapsed (its worker died) is taken again at the score it was
claimed at, ahead of the jobs that were queued behind it, with its priority."""

from __future__ import annotations

from arq.utils import timestamp_ms
from reliability_support import wait_for

from asyncjobs import keys
from asyncjobs.claiming import Claimer

LEASE_S = 0.3


async def test_a_lapsed_job_is_claimed_again_first_with_its_score_and_priority(client, queue_name):
    q = keys.queue(queue_name)
    first = await client.enqueue_call("anything", queue=queue_name, priority=5)
    behind = [await client.enqueue_call("anything", queue=queue_name, priority=5) for _ in range(3)]
    dead = Claimer(client.redis, [q], LEASE_S, "dead")
    (taken,), _ = await dead.claim(1)
    assert taken.job_id == first.id
    assert await client.redis.get(keys.in_progress(first.id)) == b"dead"
    assert await client.redis.zscore(q, first.id) > timestamp_ms()  # out of the due range while leased

    # the dead worker never renews: once the lease lapses the job is due again, in its place
    await wait_for(lambda: _due(client, q, first.id), "the lease to lapse")
    live = Claimer(client.redis, [q], LEASE_S, "live")
    (again,), _ = await live.claim(1)
    assert again.job_id == first.id and again.job_try == 2
    assert again.score == taken.score
    assert keys.decode_score(again.score, timestamp_ms())[1] == 5
    assert await client.redis.get(keys.in_progress(first.id)) == b"live"
    rest, _ = await live.claim(10)
    assert [c.job_id for c in rest] == [h.id for h in behind]
    assert await client.redis.zcard(keys.leases(q)) == 4


async def _due(client, q: str, job_id: str) -> bool:
    score = await client.redis.zscore(q, job_id)
    return score is not None and score <= timestamp_ms() and not await client.redis.exists(keys.in_progress(job_id))
