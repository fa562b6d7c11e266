"""Queue counts for the client, CLI, HTTP API and metrics: jobs due, deferred and running in
each queue, and when the longest-waiting due job was due, with priority scores decoded."""

from __future__ import annotations

from typing import Any

from arq.utils import timestamp_ms

from asyncjobs import keys
from asyncjobs.limits import PARKED_SCORE
from asyncjobs.records import QueueStats

MAX_SCANNED = 10_000  # future entries per queue checked for a running job's lease


async def read_queue_stats(redis: Any, names: list[str]) -> list[QueueStats]:
    """:class:`QueueStats` of each queue in ``names``, in two round trips.

    A future score is a deferred job or a running job's lease (its in-progress key exists).
    The oldest due job is looked for in each priority's band of scores, since a job of higher
    priority sorts first however recently it was enqueued.
    """
    now = timestamp_ms()
    bands = keys.priority_bands(now)
    async with redis.pipeline(transaction=False) as pipe:
        for q in names:
            key = keys.queue(q)
            pipe.zcount(key, "-inf", now)
            pipe.zcount(key, f"({now}", "+inf")
            pipe.zcount(key, PARKED_SCORE, PARKED_SCORE)
            pipe.zrangebyscore(key, f"({now}", "+inf", start=0, num=MAX_SCANNED)
            for low, high in bands:
                pipe.zrangebyscore(key, low, high, start=0, num=1, withscores=True)
        raw = await pipe.execute()
    width = 4 + len(bands)
    per_queue = [raw[width * i : width * (i + 1)] for i in range(len(names))]
    async with redis.pipeline(transaction=False) as pipe:
        for q, (_, _, _, future_ids, *_) in zip(names, per_queue, strict=True):
            if future_ids:
                pipe.exists(*[keys.in_progress(i.decode()) for i in future_ids])
            else:
                pipe.zcount(keys.queue(q), "+inf", "-inf")  # 0, from the queue's own node
            pipe.hgetall(keys.stats(q))
            pipe.hexists(keys.paused_of(q), f"q:{keys.queue(q)}")
        second = await pipe.execute()
    out = []
    for i, (name, (due, future, parked, _, *firsts)) in enumerate(zip(names, per_queue, strict=True)):
        run, ended = int(second[3 * i]), {k.decode(): int(v) for k, v in second[3 * i + 1].items()}
        oldest = min((keys.decode_score(first[0][1], now)[0] for first in firsts if first), default=None)
        out.append(
            QueueStats(
                name,
                queued=due,
                deferred=future - run - parked,
                in_progress=run,
                oldest_queued_ms=oldest,
                **{k: ended.get(k, 0) for k in ("complete", "failed", "aborted")},
                waiting=parked,
                paused=bool(second[3 * i + 2]),
            )
        )
    return out
