"""The dead-letter set: jobs that failed for good, kept with payload and error until retried
or purged. Entries are msgpack (``asyncjobs:dead:<id>``) indexed by ``asyncjobs:dead``."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arq.utils import timestamp_ms
from redis.asyncio import Redis

from asyncjobs import keys
from asyncjobs.errors import DeadLetterNotFound
from asyncjobs.serialization import deserialize, error_to_dict, serialize

logger = logging.getLogger(__name__)


@dataclass
class DeadLetter:
    """One dead-lettered job."""

    job_id: str
    function: str
    args: list[Any]
    kwargs: dict[str, Any]
    queue: str
    tries: int
    reason: str
    error: dict[str, Any]
    failed_at_ms: int
    raw: bytes | None = None  # the undecodable payload, when that was the problem

    def as_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["raw"] = self.raw.hex() if self.raw is not None else None
        return d


def encode_entry(
    *,
    job_id: str,
    function: str,
    args: Any,
    kwargs: Any,
    queue: str,
    tries: int,
    reason: str,
    error: BaseException | dict[str, Any],
    raw: bytes | None = None,
) -> bytes:
    """A dead-letter entry as stored (msgpack). The end of the job writes it, in the same
    atomic call (:mod:`asyncjobs.lifecycle`), so a job never ends without its record."""
    err = error if isinstance(error, dict) else error_to_dict(error)
    entry = {
        "job_id": job_id,
        "function": function,
        "args": list(args or ()),
        "kwargs": dict(kwargs or {}),
        "queue": queue,
        "tries": tries,
        "reason": reason,
        "error": err,
        "failed_at_ms": timestamp_ms(),
        "raw": raw,
    }
    try:
        blob = serialize(entry)
    except Exception:  # arguments that cannot be encoded again: keep the error at least
        entry.update(args=[], kwargs={})
        blob = serialize(entry)
    logger.warning("job %s (%s) dead-lettered: %s", job_id, function, reason)
    return blob


async def record(redis: Redis, **entry: Any) -> None:
    """Add a job to the dead-letter set on its own (capped at ``keys.DEAD_MAX`` entries,
    oldest dropped); the arguments are :func:`encode_entry`'s. Jobs that end are
    dead-lettered by their end call instead."""
    await store(redis, entry["job_id"], encode_entry(**entry))


def dead_set(job_id: str) -> str:
    """The dead-letter set ``job_id`` is listed in: its hash tag's (the tagged layout of
    :mod:`asyncjobs.keys`; a job's tag is its queue's)."""
    return keys.tagged(keys.DEAD, keys.tag_of(job_id))


# Lua, so each move is atomic in cluster mode too (its pipelines have no MULTI): the entry and
# its set share the job's hash tag. KEYS: the entry, the set.
# ARGV: job id, entry, ttl (s), score (ms), cap ('' = none) -> 1
_PUT = """
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[1])
if ARGV[5] ~= '' then redis.call('ZREMRANGEBYRANK', KEYS[2], 0, -tonumber(ARGV[5]) - 1) end
return 1
"""
# KEYS: the entry, the set. ARGV: job id -> {the entry or false, 1 if it was listed}, both removed
_TAKE = """
local blob = redis.call('GET', KEYS[1])
local listed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('DEL', KEYS[1])
return {blob, listed}
"""


async def _put(redis: Redis, job_id: str, blob: bytes, cap: int | str) -> None:
    argv: list[Any] = [job_id, blob, keys.DEAD_TTL_S, timestamp_ms(), cap]
    await redis.register_script(_PUT)(keys=[keys.dead(job_id), dead_set(job_id)], args=argv)


async def _take(redis: Redis, job_id: str) -> tuple[bytes | None, bool]:
    blob, listed = await redis.register_script(_TAKE)(keys=[keys.dead(job_id), dead_set(job_id)], args=[job_id])
    return blob, bool(listed)


async def store(redis: Redis, job_id: str, blob: bytes) -> None:
    """Write the encoded dead letter ``blob`` of ``job_id`` (idempotent: the end call that
    writes it again overwrites the same entry)."""
    await _put(redis, job_id, blob, keys.DEAD_MAX)


def _decode(blob: bytes) -> DeadLetter:
    d = deserialize(blob)
    return DeadLetter(**{k: d.get(k) for k in DeadLetter.__dataclass_fields__})


async def get(redis: Redis, job_id: str) -> DeadLetter:
    blob = await redis.get(keys.dead(job_id))
    if blob is None:
        raise DeadLetterNotFound(job_id)
    return _decode(blob)


async def list_entries(
    redis: Redis, *, offset: int = 0, limit: int = 100, tags: Sequence[str] = ("",)
) -> tuple[int, list[DeadLetter]]:
    """Newest first: (total, a page of entries), over the dead-letter sets of hash ``tags``."""
    async with redis.pipeline(transaction=False) as pipe:
        for tag in tags:
            pipe.zcard(keys.tagged(keys.DEAD, tag))
            pipe.zrevrange(
                keys.tagged(keys.DEAD, tag), 0 if len(tags) > 1 else offset, offset + limit - 1, withscores=True
            )
        raw = await pipe.execute()
    total = sum(raw[0::2])
    newest = sorted((entry for page in raw[1::2] for entry in page), key=lambda e: -e[1])
    ids = [i for i, _ in (newest[offset : offset + limit] if len(tags) > 1 else newest)]
    if not ids:
        return total, []
    blobs = await redis.mget([keys.dead(i.decode()) for i in ids])
    entries = [_decode(b) for b in blobs if b is not None]
    return total, entries


async def remove(redis: Redis, job_id: str) -> bool:
    return (await _take(redis, job_id))[1]


async def purge(redis: Redis, tags: Sequence[str] = ("",)) -> int:
    """Delete the dead letters of hash ``tags``; -> how many there were."""
    n = 0
    for tag in tags:
        ids = await redis.zrange(keys.tagged(keys.DEAD, tag), 0, -1)
        if ids:
            await redis.delete(*[keys.dead(i.decode()) for i in ids])
        await redis.delete(keys.tagged(keys.DEAD, tag))
        n += len(ids)
    return n


async def take(redis: Redis, job_id: str) -> tuple[DeadLetter, bytes]:
    """Remove the dead letter and return it with its stored form (for :func:`put_back`)."""
    blob, _ = await _take(redis, job_id)
    if blob is None:
        raise DeadLetterNotFound(job_id)
    return _decode(blob), blob


async def put_back(redis: Redis, job_id: str, blob: bytes) -> None:
    """Undo :func:`take` (a retry that could not be enqueued)."""
    await _put(redis, job_id, blob, "")
