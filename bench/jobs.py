"""The benchmark's job functions, once for asyncjobs (``@job``) and once for plain arq."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from arq.connections import RedisSettings

import asyncjobs
from asyncjobs import JobContext, Registry, Settings


@asyncjobs.job
async def noop(ctx: JobContext) -> None:
    return None


@asyncjobs.job
async def stamp(ctx: JobContext, key: str) -> None:
    await ctx.redis.rpush(key, repr(time.time()))


@asyncjobs.job
async def nap(ctx: JobContext, seconds: float) -> None:
    await asyncio.sleep(seconds)


async def arq_noop(ctx: dict[str, Any]) -> None:
    return None


async def arq_stamp(ctx: dict[str, Any], key: str) -> None:
    await ctx["redis"].rpush(key, repr(time.time()))


async def arq_nap(ctx: dict[str, Any], seconds: float) -> None:
    await asyncio.sleep(seconds)


registry = Registry([noop, stamp, nap])

ARQ_NAMES = {"noop": "arq_noop", "stamp": "arq_stamp", "nap": "arq_nap"}


def ours_settings(url: str, concurrency: int) -> type:
    return asyncjobs.worker_settings(registry, settings=Settings(redis_url=url, concurrency=concurrency))


def arq_settings(url: str, concurrency: int, poll_delay: float) -> dict[str, Any]:
    """Plain arq as its users run it: pickle, INFO job logging, the given poll delay."""
    return {
        "functions": [arq_noop, arq_stamp, arq_nap],
        "redis_settings": RedisSettings.from_dsn(url),
        "max_jobs": concurrency,
        "poll_delay": poll_delay,
    }
