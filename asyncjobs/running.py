"""Running: arq's ``run_job`` in small steps, fed by the claim (which already read the job,
counted the try and took any abort request), so a job costs no round trip before its function
runs and one shared, batched call when it ends (:mod:`asyncjobs.finishing`).

Semantics follow arq: the same result format, retries (``Retry``, cancelled jobs re-run),
aborts, per-function timeouts and ``max_tries``, the ``on_job_start``/``on_job_end``/
``after_job_end`` hooks. The function runs in the job's own task (no second task and
``wait_for`` per job), and per-job log lines are at DEBUG: formatting two INFO lines per job
costs more CPU than a no-op job itself.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arq.constants import keep_cronjob_progress
from arq.jobs import SerializationError, deserialize_job_raw, serialize_result
from arq.utils import ms_to_datetime, timestamp_ms
from arq.worker import JobExecutionFailed, Retry, RetryJob, no_result

from asyncjobs import deadletter, keys
from asyncjobs.claiming import Claimed
from asyncjobs.context import CTX_RUNTIME
from asyncjobs.finishing import shielded
from asyncjobs.lifecycle import CTX_RUN, JobEnd, JobRun, Outcome
from asyncjobs.serialization import error_to_dict

if TYPE_CHECKING:
    from asyncjobs.worker import Worker

logger = logging.getLogger(__name__)
RETRY_KEY_TTL_S = 88400  # as arq


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


async def run_job(w: Worker, c: Claimed) -> None:
    """Run one claimed job to its end (result stored or re-queued)."""
    job = _Job(c, c.job_try)
    start_ms = timestamp_ms()
    failure = await _prepare(w, job)
    if failure is not None:
        w.jobs_failed += 1
        await shielded(_end_early(w, job, failure, start_ms))
        return
    await _execute(w, job)


async def _end_early(w: Worker, job: _Job, failure: BaseException, start_ms: int) -> None:
    """A job that failed before its function ran: expired, unknown function, undecodable
    payload, too many tries, or aborted before start. All but the abort are dead-lettered, in
    the same call that ends the job."""
    c = job.c
    keep, px = failed_result_retention(w, job.name)
    data = _result_data(w, job, False, failure, start_ms, timestamp_ms()) if keep else None
    await w.finisher.finish(
        c.job_id,
        c.queue_key,
        done=True,
        result=data,
        result_px=px or 0,
        end=early_end(w, c.job_id, c.queue_key, failure, job.name, job.args, job.kwargs, job.job_try, c.payload),
    )


def early_end(
    w: Worker,
    job_id: str,
    queue_key: str,
    failure: Any,
    function: str,
    args: Any,
    kwargs: Any,
    tries: int,
    payload: bytes | None,
) -> JobEnd:
    """The end of a job that failed before its function ran (``failure``: the error, or
    what arq's result record holds), with its dead letter unless it was aborted."""
    error = (
        error_to_dict(failure)
        if isinstance(failure, BaseException)
        else {"type": "JobFailed", "message": str(failure), "traceback": None}
    )
    if error["type"] == "CancelledError":
        return JobEnd(job_id, queue_key, Outcome.ABORTED, function)
    queue = keys.queue_name_of(queue_key)
    runtime = w.ctx.get(CTX_RUNTIME) if w.ctx else None
    if runtime is not None:
        runtime.metrics.dead_letter(function, queue)
    undecodable = function == "<unknown>" and payload is not None
    dead = deadletter.encode_entry(
        job_id=job_id,
        function=function,
        args=args,
        kwargs=kwargs,
        queue=queue,
        tries=tries,
        reason=str(error["message"]),
        error=error,
        raw=payload if undecodable else None,
    )
    return JobEnd(job_id, queue_key, Outcome.FAILED, function, dead)


def decode_result(deserializer: Any, data: bytes | None) -> dict[str, Any]:
    """arq's result record ``data``, decoded with the worker's own deserializer (arq's default:
    pickle), as a dict; ``{}`` when there is none or it cannot be read."""
    if not data:
        return {}
    try:
        info = (deserializer or pickle.loads)(data)
    except Exception:  # any codec, any corrupt input: the caller falls back to what it knows
        logger.warning("a result record (%d bytes) cannot be decoded with the worker's serializer", len(data))
        return {}
    return info if isinstance(info, dict) else {}


def failed_result_retention(w: Worker, function: str) -> tuple[bool, int | None]:
    """(keep?, ttl ms) for an early failure's result: the function's ``keep_result`` when the
    function is known (arq uses the worker's default here), else the worker's."""
    forever, seconds = w.keep_result_forever, w.keep_result_s
    fn = w.functions.get(function)
    if fn is not None and fn.keep_result_s is not None:
        forever, seconds = bool(fn.keep_result_forever), fn.keep_result_s
    return forever or seconds > 0, None if forever else int(seconds * 1000)


def _result_data(w: Worker, job: _Job, success: bool, result: Any, start_ms: int, finished_ms: int) -> bytes | None:
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
        serializer=w.job_serializer,
    )


async def _prepare(w: Worker, job: _Job) -> BaseException | None:
    """Decode and check the job; the reason it cannot run, or None."""
    c = job.c
    if c.payload is None:
        logger.warning("job %s expired", c.job_id)
        return JobExecutionFailed("job expired")
    try:
        job.name, job.args, job.kwargs, enqueue_try, job.enqueue_ms = deserialize_job_raw(
            c.payload, deserializer=w.job_deserializer
        )
    except SerializationError as e:
        logger.exception("deserializing job %s failed", c.job_id)
        return e
    if c.aborted and w.allow_abort_jobs:  # as arq: without it, an abort request is ignored
        logger.info("job %s (%s) aborted before start", c.job_id, job.name)
        return asyncio.CancelledError()
    job.function = w.functions.get(job.name)
    if job.function is None:
        logger.warning("job %s, function %r not found", c.job_id, job.name)
        return JobExecutionFailed(f"function {job.name!r} not found")
    if enqueue_try and enqueue_try > job.job_try:
        job.job_try = enqueue_try
        await w.pool.setex(keys.retry(c.job_id), RETRY_KEY_TTL_S, str(enqueue_try))
    max_tries = w.max_tries if job.function.max_tries is None else job.function.max_tries
    if job.job_try > max_tries:
        logger.warning("job %s (%s): max %d tries exceeded", c.job_id, job.name, max_tries)
        return JobExecutionFailed(f"max {max_tries} retries exceeded")
    return None


async def _execute(w: Worker, job: _Job) -> None:
    c, fn = job.c, job.function
    run = JobRun(engine=True)
    ctx = {
        **w.ctx,
        "job_id": c.job_id,
        "job_try": job.job_try,
        "enqueue_time": ms_to_datetime(job.enqueue_ms),
        "score": c.score,
        CTX_RUN: run,
    }
    if w.on_job_start:
        await w.on_job_start(ctx)
    start_ms = timestamp_ms()
    if logger.isEnabledFor(logging.DEBUG):
        logger.debug("job %s → %s try=%d", c.job_id, job.name, job.job_try)
    out = await _call(w, job, ctx)
    finished_ms = timestamp_ms()
    forever = w.keep_result_forever if fn.keep_result_forever is None else fn.keep_result_forever
    keep_s = w.keep_result_s if fn.keep_result_s is None else fn.keep_result_s
    data = None
    if out.result is not no_result and (forever or keep_s > 0):
        data = _result_data(w, job, out.success, out.result, start_ms, finished_ms)
    if w.on_job_end:
        await w.on_job_end(ctx)
    cron = hasattr(fn, "next_run")
    await shielded(
        w.finisher.finish(
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
        logger.debug(
            "job %s ← %s %s in %dms", c.job_id, job.name, "done" if out.done else "re-queued", finished_ms - start_ms
        )
    if w.after_job_end:
        await w.after_job_end(ctx)


async def _call(w: Worker, job: _Job, ctx: dict[str, Any]) -> _Outcome:
    fn = job.function
    timeout_s = w.job_timeout_s if fn.timeout_s is None else fn.timeout_s
    w.job_tasks[job.c.job_id] = asyncio.current_task()  # type: ignore[assignment]
    try:
        try:
            async with asyncio.timeout(timeout_s):
                result = await fn.coroutine(ctx, *job.args, **job.kwargs)
        finally:
            w.job_tasks.pop(job.c.job_id, None)
    except (Exception, asyncio.CancelledError) as e:
        return _on_error(w, job, e)
    w.jobs_complete += 1
    return _Outcome(result, done=True, success=True)


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


def _on_error(w: Worker, job: _Job, e: BaseException) -> _Outcome:
    job_id = job.c.job_id
    if w.retry_jobs and isinstance(e, Retry):
        w.jobs_retried += 1
        incr = e.defer_score + (timestamp_ms() - job.c.score) if e.defer_score else None
        return _Outcome(done=False, incr_score=incr)
    if job_id in w.aborting_tasks and isinstance(e, asyncio.CancelledError):
        logger.info("job %s (%s) aborted", job_id, job.name)
        w.aborting_tasks.remove(job_id)
        w.jobs_failed += 1
        return _Outcome(e)
    if w.retry_jobs and isinstance(e, asyncio.CancelledError | RetryJob):
        logger.info("job %s (%s) cancelled; it will run again", job_id, job.name)
        w.jobs_retried += 1
        return _Outcome(done=False, keep_place=True)
    logger.exception("job %s (%s) failed: %s: %s", job_id, job.name, type(e).__name__, str(e)[:80])
    w.jobs_failed += 1
    return _Outcome(e)
