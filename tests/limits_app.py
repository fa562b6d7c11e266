"""Job functions and worker settings for the flow-control process tests (tests/test_limits_workers.py).

Worker subprocesses import it (``asyncjobs worker limits_app.WorkerSettings``, ``tests/`` on
``PYTHONPATH``). The jobs record what the tests check in Redis, under ``flowtest:<queue>:...``:
how many run at once (``live``, and the highest seen, ``max``), and when each was claimed
(the claim time the limits decide on, from the job's state hash). Starts are also appended to
the run log of :mod:`reliability_app` (``RELIABILITY_RUNLOG``).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from reliability_app import log_start

from asyncjobs import JobContext, Registry, job, keys, worker_settings

# INCR the live count and keep the highest seen: one atomic call
_ENTER = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or '0') then redis.call('SET', KEYS[2], n) end
return n
"""


async def _enter(ctx: JobContext, group: str) -> None:
    await ctx.redis.eval(_ENTER, 2, f"flowtest:{group}:live", f"flowtest:{group}:max")


async def _leave(ctx: JobContext, group: str) -> None:
    await ctx.redis.decr(f"flowtest:{group}:live")


async def _record_claim(ctx: JobContext, group: str) -> None:
    started = await ctx.redis.hget(keys.state(ctx.job_id), "started_ms")
    await ctx.redis.rpush(f"flowtest:{group}:claims", started)


@job(max_concurrency=3)
async def flow_capped(ctx: JobContext, group: str, seconds: float) -> None:
    """At most 3 at once, fleet-wide."""
    await _enter(ctx, group)
    try:
        await asyncio.sleep(seconds)
    finally:
        await _leave(ctx, group)


@job(max_concurrency=1)
async def flow_single(ctx: JobContext, seconds: float) -> int:
    """One at a time; logs its start (the kill test finds the worker holding the slot); sleeps
    ``seconds`` on its first try, briefly on a re-run."""
    log_start(ctx.job_id, ctx.job_try, time.time())
    await asyncio.sleep(seconds if ctx.job_try == 1 else 0.05)
    return os.getpid()


@job(rate_limit="5/s")
async def flow_rated(ctx: JobContext, group: str) -> None:
    """At most 5 claims in any second, fleet-wide."""
    await _record_claim(ctx, group)


@job
async def flow_free(ctx: JobContext, group: str) -> float:
    """No limits."""
    await ctx.redis.rpush(f"flowtest:{group}:free", time.time())
    return time.time()


@job(max_concurrency=1, concurrency_key=lambda tenant, seconds: tenant, rate_limit="20/s", rate_key=lambda t, s: t)
async def flow_tenant(ctx: JobContext, tenant: str, seconds: float) -> None:
    """One at a time per tenant, 20 a second per tenant."""
    await _enter(ctx, tenant)
    try:
        await asyncio.sleep(seconds)
    finally:
        await _leave(ctx, tenant)


def _settings() -> Any:
    from settings import load

    return load(os.environ)


SETTINGS = _settings()
REGISTRY = Registry([flow_capped, flow_single, flow_rated, flow_free, flow_tenant])
WorkerSettings = worker_settings(REGISTRY, settings=SETTINGS)
