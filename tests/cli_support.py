"""A settings module for CLI tests (``asyncjobs --settings cli_support``): the example
functions plus a job that reports progress in steps and fails its first try."""

from __future__ import annotations

from asyncjobs import JobContext, Registry, job
from asyncjobs.examples import FUNCTIONS
from settings import CRON_JOBS, SETTINGS  # noqa: F401 - the CLI reads them from this module


@job(retries=3, backoff=0)
async def flaky_steps(ctx: JobContext, steps: int) -> str:
    """Reports ``steps`` progress steps; the first try fails half way."""
    for i in range(1, steps + 1):
        if ctx.job_try == 1 and i > steps // 2:
            raise ValueError("boom on the first try")
        await ctx.progress(100 * i / (steps + 1), message=f"step {i}")
    return f"done on try {ctx.job_try}"


REGISTRY = Registry([*FUNCTIONS, flaky_steps])
