"""Pause and resume a queue or a function, and read the flow-control state for people (the
CLI, the HTTP API, metrics).

A paused queue is not read by the claim (its jobs stay queued and visible; workers do not
wake for it); a paused function's jobs are parked when a worker reaches them
(:mod:`asyncjobs.limits`). Resuming deletes the flag and, in the same Lua call, brings parked
jobs back and publishes the queue's wake-up, so workers start at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import orjson
from arq.utils import timestamp_ms

from asyncjobs import keys, limits
from asyncjobs.errors import ConfigError
from asyncjobs.registry import check_queue

# KEYS[1]: the paused hash; ARGV: the function, how many parked jobs to bring back per call
# -> how many were brought back (less than asked: none are left)
RESUME_FUNCTION = (
    limits.LUA_PARKING
    + """
redis.call('HDEL', KEYS[1], 'f:' .. ARGV[1])
return lim_unpark(KEYS[2], tonumber(ARGV[2]))
"""
)
RESUME_BATCH = 1000


def _function_name(name: str) -> str:
    if not isinstance(name, str) or not 1 <= len(name) <= 200 or any(c.isspace() for c in name):
        raise ConfigError(f"function name {name!r} is not valid: 1-200 characters, no spaces", key="function")
    return name


async def pause_queue(redis: Any, queue: str) -> None:
    """Stop workers from starting jobs of ``queue`` (running jobs finish)."""
    await redis.hset(keys.paused_of(check_queue(queue)), f"q:{keys.queue(queue)}", timestamp_ms())


async def resume_queue(redis: Any, queue: str) -> bool:
    """Let workers start ``queue``'s jobs again, at once; False if it was not paused."""
    removed = await redis.hdel(keys.paused_of(check_queue(queue)), f"q:{keys.queue(queue)}")
    await redis.publish(keys.wake(queue), b"0")
    return bool(removed)


async def pause_function(redis: Any, function: str, tags: Sequence[str] = ("",)) -> None:
    """Stop workers from starting jobs of ``function``: they are parked as workers reach them
    (in the queues of hash ``tags``: each tag's claims read its own paused hash)."""
    for tag in tags:
        await redis.hset(keys.tagged(keys.PAUSED, tag), f"f:{_function_name(function)}", timestamp_ms())


async def resume_function(redis: Any, function: str, tags: Sequence[str] = ("",)) -> int:
    """Let ``function``'s jobs start again: its parked jobs are due again at their old scores
    (their queues woken). -> how many were brought back."""
    script = redis.register_script(RESUME_FUNCTION)
    total = 0
    for tag in tags:
        pk = keys.tagged(keys.parked(""), tag) + "paused:" + _function_name(function)
        while True:
            n = int(await script(keys=[keys.tagged(keys.PAUSED, tag), pk], args=[function, RESUME_BATCH]))
            total += n
            if n < RESUME_BATCH:
                break
    return total


async def paused(redis: Any, tags: Sequence[str] = ("",)) -> dict[str, list[str]]:
    """``{"queues": [...], "functions": [...]}``: what is paused now (in hash ``tags``)."""
    flags = {f.decode() for tag in tags for f in await redis.hkeys(keys.tagged(keys.PAUSED, tag))}
    return {
        "queues": sorted(keys.queue_name_of(f[2:]) for f in flags if f.startswith("q:")),
        "functions": sorted(f[2:] for f in flags if f.startswith("f:")),
    }


@dataclass
class LimitState:
    """One limited function: its limits (as its workers registered them) and their use now.
    Per-key limits are reported as configured only (``rate_keyed``/``concurrency_keyed``):
    their keys are many and come and go; the counts here are the function-wide limit's."""

    function: str
    queue: str | None
    rate_limit: str | None
    burst: int | None
    max_concurrency: int | None
    rate_keyed: bool
    concurrency_keyed: bool
    running: int  # slots held
    at_concurrency: int  # jobs parked on the concurrency limit
    tokens: float | None  # rate tokens available now
    rate_limited: int  # jobs waiting for a token (parked, and the one scheduled)
    paused: bool
    paused_jobs: int  # jobs parked while the function is paused

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


async def limit_states(redis: Any, tags: Sequence[str] = ("",)) -> list[LimitState]:
    """Every limited or paused function's limits and use, by name (limits are kept per hash
    tag: the use is summed over ``tags``, the tokens are those of the function's own queue)."""
    config = {k.decode(): orjson.loads(v) for k, v in (await redis.hgetall(keys.LIMITS)).items()}
    flags = await paused(redis, tags)
    names = sorted(set(config) | set(flags["functions"]))
    now = timestamp_ms()
    per_name = 5 * len(tags)
    async with redis.pipeline(transaction=False) as pipe:
        for name in names:
            for tag in tags:
                parked = keys.tagged(keys.parked(""), tag)
                pipe.zcard(keys.tagged(keys.slots(""), tag) + name)
                pipe.zcard(parked + "slots:" + name)
                pipe.hmget(keys.tagged(keys.rate(""), tag) + name, "tat", "sched")
                pipe.zcard(parked + "rate:" + name)
                pipe.zcard(parked + "paused:" + name)
        replies = await pipe.execute()
    out = []
    for i, name in enumerate(names):
        c = config.get(name, {})
        own = keys.tag_of(keys.queue(c["queue"])) if isinstance(c.get("queue"), str) else ""
        mine = list(tags).index(own) if own in tags else 0  # (a queue outside the store's: the first tag's)
        per_tag = [replies[per_name * i + 5 * t : per_name * i + 5 * t + 5] for t in range(len(tags))]
        held, parked_c, parked_r, parked_p = (sum(int(r[k]) for r in per_tag) for k in (0, 1, 3, 4))
        tat, _ = per_tag[mine][2]
        sched = any(r[2][1] for r in per_tag)
        out.append(
            LimitState(
                function=name,
                queue=c.get("queue"),
                rate_limit=c.get("rate_limit"),
                burst=c.get("burst"),
                max_concurrency=c.get("max_concurrency"),
                rate_keyed=bool(c.get("rate_keyed")),
                concurrency_keyed=bool(c.get("concurrency_keyed")),
                running=int(held),
                at_concurrency=int(parked_c),
                tokens=_tokens(c, tat, now),
                rate_limited=int(parked_r) + (1 if sched else 0),
                paused=name in flags["functions"],
                paused_jobs=int(parked_p),
            )
        )
    return out


def _tokens(config: dict[str, Any], tat: bytes | None, now: int) -> float | None:
    """Rate tokens available at ``now`` (GCRA: how far the next token time lies behind the
    burst window), ``None`` for a function without a rate limit."""
    per_s, burst = config.get("rate_per_s"), config.get("burst")
    if not per_s or not burst:
        return None
    interval = 1000 / float(per_s)
    ahead = max(0.0, float(tat) - now) if tat else 0.0
    return round(max(0.0, min(float(burst), float(burst) - ahead / interval)), 3)
