"""Job functions and worker settings for the workflow fault tests (tests/test_workflows_faults.py).

Worker subprocesses import it (``asyncjobs worker workflow_app.WorkerSettings`` or
``arq workflow_app.WorkerSettings``, with ``tests/`` on ``PYTHONPATH``); settings come from the
environment. ``wf_gather`` counts its invocations in Redis (``INCR calls:<job id>``), so a test
can tell a callback that ran twice from one that ran once.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from asyncjobs import JobContext, Registry, job, worker_settings


@job(retries=2, backoff=0.1)
async def wf_square(ctx: JobContext, x: int, pause: float = 0.0) -> int:
    if pause:
        await asyncio.sleep(pause)
        await ctx.redis.rpush(f"ran:{ctx.job_id}", os.getpid())
    return x * x


@job
async def wf_gather(ctx: JobContext, results: list[Any]) -> int:
    await ctx.redis.incr(f"calls:{ctx.job_id}")
    await ctx.redis.set(f"gathered:{ctx.job_id}", ",".join(map(str, results)))
    return len(results)


@job
async def wf_add(ctx: JobContext, value: int, n: int) -> int:
    await ctx.redis.rpush(f"ran:{ctx.job_id}", os.getpid())
    return value + n


def _settings() -> Any:
    from settings import load

    return load(os.environ)


SETTINGS = _settings()
REGISTRY = Registry([wf_square, wf_gather, wf_add])
WorkerSettings = worker_settings(REGISTRY, settings=SETTINGS)
