"""Running: :class:`JobRunner`, arq's ``run_job`` in small steps, fed by the claim (which
already read the job, counted the try and took any abort request), so a job costs no round trip
before its function runs and one shared, batched call when it ends (:mod:`asyncjobs.finishing`).

The runner is built by ``Worker.__init__`` from explicit collaborators: the functions, arq's job
hooks (:class:`JobHooks`), the worker's defaults (:class:`JobDefaults`), the finisher, the
counters arq's health check reads (:class:`JobCounters`), the registry of running tasks arq's
abort handling uses, the worker's ``ctx`` and its Redis pool (:class:`~asyncjobs.pool_ref.PoolRef`).
It knows nothing else of the worker.

Semantics follow arq: the same result format, retries (``Retry``, cancelled jobs re-run),
aborts, per-function timeouts and ``max_tries``, the ``on_job_start``/``on_job_end``/
``after_job_end`` hooks. The function runs in the job's own task (no second task and
``wait_for`` per job), and per-job log lines are at DEBUG: formatting two INFO lines per job
costs more CPU than a no-op job itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from arq.constants import keep_cronjob_progress
from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import ms_to_datetime, timestamp_ms
from arq.worker import JobExecutionFailed, Retry, RetryJob, no_result

from asyncjobs import keys
from asyncjobs.claiming import Claimed
from asyncjobs.context import CTX_RUNTIME
from asyncjobs.finishing import Finisher, early_end, shielded
from asyncjobs.lifecycle import CTX_RUN, JobEnd, JobRun, Outcome
from asyncjobs.pool_ref import PoolRef

logger = logging.getLogger(__name__)
RETRY_KEY_TTL_S = 88400  # as arq

Hook = Callable[[dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class JobHooks:
    """arq's per-job hooks (``on_job_start``, ``on_job_end``, ``after_job_end``)."""

    on_job_start: Hook | None = None
    on_job_end: Hook | None = None
    after_job_end: Hook | None = None


@dataclass(frozen=True, slots=True)
class JobDefaults:
    """The worker's settings for a function that sets none, and its job codec (arq's)."""

    timeout_s: float | None = 300.0
    max_tries: int = 5
    keep_result_s: float = 3600.0
    keep_result_forever: bool = False
    retry_jobs: bool = True
    allow_abort_jobs: bool = False
    serializer: Callable[[dict[str, Any]], bytes] | None = None
    deserializer: Callable[[bytes], dict[str, Any]] | None = None


@dataclass(slots=True)
class JobCounters:
    """Jobs this worker ended, by outcome (arq's ``jobs_complete``/``failed``/``retried``)."""

    complete: int = 0
    failed: int = 0
    retried: int = 0


@dataclass(slots=True)
class _Job:
    c: Claimed
    job_try: int
    name: str = "<unknown>"
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    enqueue_ms: int = 0
    function: Any = None


@dataclass(slots=True)
class _Outcome:
    result: Any = no_result
    done: bool = True
    success: bool = False
    incr_score: int | None = None
    keep_place: bool = False  # re-queue at the job's original score (cancelled: shutdown, RetryJob)


class JobRunner:
    """Runs claimed jobs to their end (result stored, or re-queued)."""

    def __init__(
        self,
        *,
        functions: Mapping[str, Any],
        hooks: JobHooks,
        defaults: JobDefaults,
        finisher: Finisher,
        counters: JobCounters,
        tasks: dict[str, asyncio.Task[Any]],
        aborting: set[str],
        ctx: dict[str, Any],
        redis: PoolRef,
    ) -> None:
        self.functions = functions  # name -> arq Function or CronJob
        self.hooks = hooks
        self.defaults = defaults
        self.finisher = finisher
        self.counters = counters
        self.tasks = tasks  # job id -> the task running its function (arq's ``job_tasks``)
        self.aborting = aborting  # ids whose task is being cancelled by an abort (arq's ``aborting_tasks``)
        self.ctx = ctx  # the worker's ctx (resources from on_startup), copied into each job's
        self.redis = redis

    async def run(self, c: Claimed) -> None:
        """Run one claimed job to its end."""
        job = _Job(c, c.job_try)
        start_ms = timestamp_ms()
        failure = await self._prepare(job)
        if failure is not None:
            self.counters.failed += 1
            await shielded(self._end_early(job, failure, start_ms))
            return
        await self._execute(job)

    async def finish_failed(self, job_id: str, queue_key: str, result_data: bytes | None, info: dict[str, Any]) -> None:
        """End a job that failed before its function ran, from arq's result record (``info``:
        its decoded fields); the path of arq's ``finish_failed_job``."""
        function = str(info.get("f") or "<unknown>")
        async with self.redis().pipeline(transaction=False) as read:
            read.get(keys.job(job_id))
            read.get(keys.retry(job_id))
            raw, tries = await read.execute()
        end = early_end(
            job_id, queue_key, info.get("r"), function, info.get("a"), info.get("k"), int(tries or 0), raw,
            self._dead_lettered,
        )  # fmt: skip
        keep, px = self._failed_result_retention(function)
        data = result_data if keep else None
        await self.finisher.finish(job_id, queue_key, done=True, result=data, result_px=px or 0, end=end)

    # --- before the function ----------------------------------------------------------------
    async def _prepare(self, job: _Job) -> BaseException | None:
        """Decode and check the job; the reason it cannot run, or None."""
        c, d = job.c, self.defaults
        if c.payload is None:
            logger.warning("job %s expired", c.job_id)
            return JobExecutionFailed("job expired")
        try:
            job.name, job.args, job.kwargs, enqueue_try, job.enqueue_ms = deserialize_job_raw(
                c.payload, deserializer=d.deserializer
            )
        except SerializationError as e:
            logger.exception("deserializing job %s failed", c.job_id)
            return e
        if c.aborted and d.allow_abort_jobs:  # as arq: without it, an abort request is ignored
            logger.info("job %s (%s) aborted before start", c.job_id, job.name)
            return asyncio.CancelledError()
        job.function = self.functions.get(job.name)
        if job.function is None:
            logger.warning("job %s, function %r not found", c.job_id, job.name)
            return JobExecutionFailed(f"function {job.name!r} not found")
        if enqueue_try and enqueue_try > job.job_try:
            job.job_try = enqueue_try
            await self.redis().setex(keys.retry(c.job_id), RETRY_KEY_TTL_S, str(enqueue_try))
        max_tries = d.max_tries if job.function.max_tries is None else job.function.max_tries
        if job.job_try > max_tries:
            logger.warning("job %s (%s): max %d tries exceeded", c.job_id, job.name, max_tries)
            return JobExecutionFailed(f"max {max_tries} retries exceeded")
        return None

    async def _end_early(self, job: _Job, failure: BaseException, start_ms: int) -> None:
        """A job that failed before its function ran: expired, unknown function, undecodable
        payload, too many tries, or aborted before start. All but the abort are dead-lettered,
        in the same call that ends the job."""
        c = job.c
        keep, px = self._failed_result_retention(job.name)
        data = self._result_data(job, False, failure, start_ms, timestamp_ms()) if keep else None
        end = early_end(
            c.job_id, c.queue_key, failure, job.name, job.args, job.kwargs, job.job_try, c.payload, self._dead_lettered
        )
        await self.finisher.finish(c.job_id, c.queue_key, done=True, result=data, result_px=px or 0, end=end)

    def _failed_result_retention(self, function: str) -> tuple[bool, int | None]:
        """(keep?, ttl ms) for an early failure's result: the function's ``keep_result`` when
        the function is known (arq uses the worker's default here), else the worker's."""
        forever, seconds = self.defaults.keep_result_forever, self.defaults.keep_result_s
        fn = self.functions.get(function)
        if fn is not None and fn.keep_result_s is not None:
            forever, seconds = bool(fn.keep_result_forever), fn.keep_result_s
        return forever or seconds > 0, None if forever else int(seconds * 1000)

    def _dead_lettered(self, function: str, queue: str) -> None:
        runtime = self.ctx.get(CTX_RUNTIME)
        if runtime is not None:
            runtime.metrics.dead_letter(function, queue)

    def _result_data(self, job: _Job, success: bool, result: Any, start_ms: int, finished_ms: int) -> bytes | None:
        """arq's serialized result record for ``job``."""
        c = job.c
        return serialize_result(
            job.name,
            job.args,
            job.kwargs,
            job.job_try,
            job.enqueue_ms,
            success,
            result,
            start_ms,
            finished_ms,
            f"{c.job_id}:{job.name}",
            c.queue_key,
            job_id=c.job_id,
            serializer=self.defaults.serializer,
        )

    # --- the function and after ---------------------------------------------------------------
    async def _execute(self, job: _Job) -> None:
        c, fn, d, hooks = job.c, job.function, self.defaults, self.hooks
        run = JobRun(engine=True)
        ctx = {
            **self.ctx,
            "job_id": c.job_id,
            "job_try": job.job_try,
            "enqueue_time": ms_to_datetime(job.enqueue_ms),
            "score": c.score,
            CTX_RUN: run,
        }
        if hooks.on_job_start:
            await hooks.on_job_start(ctx)
        start_ms = timestamp_ms()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("job %s → %s try=%d", c.job_id, job.name, job.job_try)
        out = await self._call(job, ctx)
        finished_ms = timestamp_ms()
        forever = d.keep_result_forever if fn.keep_result_forever is None else fn.keep_result_forever
        keep_s = d.keep_result_s if fn.keep_result_s is None else fn.keep_result_s
        data = None
        if out.result is not no_result and (forever or keep_s > 0):
            data = self._result_data(job, out.success, out.result, start_ms, finished_ms)
        if hooks.on_job_end:
            await hooks.on_job_end(ctx)
        cron = hasattr(fn, "next_run")
        await shielded(
            self.finisher.finish(
                c.job_id,
                c.queue_key,
                done=out.done,
                result=data,
                result_px=0 if forever else int(keep_s * 1000),
                retry_score=_retry_score(c.score, out),
                keep_in_progress_ms=keep_cronjob_progress * 1000 if cron else None,
                end=_end(job, out, run),
            )
        )
        if logger.isEnabledFor(logging.DEBUG):
            state = "done" if out.done else "re-queued"
            logger.debug("job %s ← %s %s in %dms", c.job_id, job.name, state, finished_ms - start_ms)
        if hooks.after_job_end:
            await hooks.after_job_end(ctx)

    async def _call(self, job: _Job, ctx: dict[str, Any]) -> _Outcome:
        fn = job.function
        timeout_s = self.defaults.timeout_s if fn.timeout_s is None else fn.timeout_s
        self.tasks[job.c.job_id] = asyncio.current_task()  # type: ignore[assignment]
        try:
            try:
                async with asyncio.timeout(timeout_s):
                    result = await fn.coroutine(ctx, *job.args, **job.kwargs)
            finally:
                self.tasks.pop(job.c.job_id, None)
        except (Exception, asyncio.CancelledError) as e:
            return self._on_error(job, e)
        self.counters.complete += 1
        return _Outcome(result, done=True, success=True)

    def _on_error(self, job: _Job, e: BaseException) -> _Outcome:
        job_id, retry_jobs = job.c.job_id, self.defaults.retry_jobs
        if retry_jobs and isinstance(e, Retry):
            self.counters.retried += 1
            incr = e.defer_score + (timestamp_ms() - job.c.score) if e.defer_score else None
            return _Outcome(done=False, incr_score=incr)
        if job_id in self.aborting and isinstance(e, asyncio.CancelledError):
            logger.info("job %s (%s) aborted", job_id, job.name)
            self.aborting.remove(job_id)
            self.counters.failed += 1
            return _Outcome(e)
        if retry_jobs and isinstance(e, asyncio.CancelledError | RetryJob):
            logger.info("job %s (%s) cancelled; it will run again", job_id, job.name)
            self.counters.retried += 1
            return _Outcome(done=False, keep_place=True)
        logger.exception("job %s (%s) failed: %s: %s", job_id, job.name, type(e).__name__, str(e)[:80])
        self.counters.failed += 1
        return _Outcome(e)


def _end(job: _Job, out: _Outcome, run: JobRun) -> JobEnd | None:
    """How the run ended, as the finish writes it (None: a retry, whose event the runtime
    published when its try failed)."""
    if out.done:
        if out.success:
            outcome = Outcome.COMPLETE
        else:
            outcome = Outcome.ABORTED if isinstance(out.result, asyncio.CancelledError) else Outcome.FAILED
        return JobEnd(job.c.job_id, job.c.queue_key, outcome, job.name, run.dead_letter)
    if out.keep_place:
        return JobEnd(job.c.job_id, job.c.queue_key, Outcome.REQUEUED, job.name)
    return None


def _retry_score(score: int, out: _Outcome) -> int:
    """Where a job that will run again goes back in its queue. ``Retry(defer=...)`` and the
    runtime's backoff: an absolute time (a priority is lost). A cancelled job (shutdown): its
    original score, as plain arq leaves it, so it keeps its place and priority; the claim took
    it only once that score was due, so it is due at once."""
    now = timestamp_ms()
    if out.incr_score:
        return score + out.incr_score
    return min(score, now) if out.keep_place else now
