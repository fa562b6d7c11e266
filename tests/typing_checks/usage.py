"""Public API usage that must type-check under ``mypy --strict`` (run by tests/test_typing.py):
the ``@job`` decorator keeps the function's parameters and return type through enqueueing."""

from __future__ import annotations

from typing import Any, assert_type

import asyncjobs
from asyncjobs import JobContext, JobHandle, JobRecord, JobStatus, Registry, Settings, job


@job
async def add(ctx: JobContext, a: int, b: int = 1) -> int:
    return a + b


@job(retries=3, timeout=30, queue="reports")
async def report(ctx: JobContext, title: str, *, pages: list[str]) -> dict[str, int]:
    await ctx.progress(50, "half way", step=1)
    return {title: len(pages)}


async def main() -> None:
    async with asyncjobs.connect("redis://localhost:6379/0", registry=Registry([add, report])) as client:
        h = await client.enqueue(add, 1, 2)
        assert_type(h, JobHandle[int])
        assert_type(await h.result(timeout=5), int)
        assert_type(await client.enqueue(add, 1), JobHandle[int])
        assert_type(await client.enqueue(add, a=1, b=2), JobHandle[int])
        r = await client.enqueue(report.options(job_id="r-1", defer_by=10), "t", pages=["a", "b"])
        assert_type(r, JobHandle[dict[str, int]])
        assert_type(await r.result(), dict[str, int])
        by_name = await client.enqueue("add", 1, 2)
        assert_type(by_name, JobHandle[Any])
        assert_type(await h.status(), JobStatus)
        assert_type(await h.info(), JobRecord)
        assert_type(h.id, str)
        assert_type(await h.abort(), bool)
    assert_type(Settings(concurrency=5).queues, tuple[str, ...])
