"""Handlers for one job: enqueue (idempotent by job id), record, result (long poll), abort."""

from __future__ import annotations

import contextlib
from typing import Any

from aiohttp import web

from asyncjobs.client import JobCall, JobHandle
from asyncjobs.connections import Encoded
from asyncjobs.errors import DuplicateJob, JobAborted, JobFailed
from asyncjobs.records import JobRecord, JobStatus
from web import params
from web.responses import ApiError, json_response
from web.schemas import EnqueueRequest, enqueue_options, parse_enqueue
from web.state import CLIENT, METRICS, SCHEMAS, SETTINGS
from web.tracebacks import scrub_record

MAX_WAIT_S = 60.0


def links(job_id: str) -> dict[str, str]:
    """Where to follow a job."""
    base = f"/api/jobs/{job_id}"
    return {"self": base, "result": f"{base}/result", "events": f"{base}/events", "abort": f"{base}/abort"}


def job_body(rec: JobRecord, *, full_paths: bool = False) -> dict[str, Any]:
    """A job record as the API shows it (traceback paths relative unless ``full_paths``)."""
    return {**scrub_record(rec.as_dict(), full_paths=full_paths), "links": links(rec.job_id)}


async def enqueue(request: web.Request) -> web.Response:
    """``POST /api/jobs``: 202 and the new job; 200 and the existing job if ``job_id`` is taken,
    or if a flow-control option found a job holding its window (with ``"deduplicated"``,
    ``"debounced"`` or ``"throttled": true``)."""
    req = parse_enqueue(await params.json_body(request))
    options = enqueue_options(req)
    schema = request.app[SCHEMAS].get(req.function)
    args, kwargs = schema.validate(req.args, req.kwargs)
    req = req.model_copy(update={"args": args, "kwargs": kwargs})
    settings = request.app[SETTINGS]
    queue = req.queue or schema.function.opts.queue or settings.queues[0]
    if queue not in settings.queues:
        served = ", ".join(settings.queues)
        raise ApiError(422, "unknown_queue", f"queue {queue!r} is not served here; queues: {served}", {"queue": queue})
    client = request.app[CLIENT]
    try:
        handle, placed = await client.enqueue_placed(JobCall(req.function, args, kwargs, options, queue, checked=True))
    except DuplicateJob as e:
        return await _existing(client.job(e.job_id), req)
    if handle.admission != "created":  # flow control: the job holding the window
        rec = await handle.info()
        return json_response({**job_body(rec), handle.admission: True}, status=200)
    request.app[METRICS].enqueued.labels(req.function).inc()
    return json_response(
        job_body(_new_record(handle, req, placed)), status=202, headers={"Location": links(handle.id)["self"]}
    )


def _new_record(handle: JobHandle[Any], req: EnqueueRequest, placed: Encoded) -> JobRecord:
    """The new job as the enqueue placed it (its run-at time, not its priority's score)."""
    return JobRecord(
        handle.id,
        JobStatus.DEFERRED if placed.run_at_ms > placed.now_ms else JobStatus.QUEUED,
        function=req.function,
        args=req.args,
        kwargs=req.kwargs,
        queue=handle.queue,
        enqueue_ms=placed.now_ms,
        scheduled_ms=placed.run_at_ms,
        priority=req.priority,
    )


async def _existing(handle: JobHandle[Any], req: EnqueueRequest) -> web.Response:
    rec = await handle.info()
    if rec.status is JobStatus.NOT_FOUND or rec.function != req.function:
        raise ApiError(
            409,
            "conflict",
            f"job id {handle.id} is already used"
            + (f" by a {rec.function} job" if rec.function else "")
            + "; pick another job_id",
            {"job_id": handle.id, "function": rec.function},
        )
    return json_response(job_body(rec), status=200)


async def get_job(request: web.Request) -> web.Response:
    """``GET /api/jobs/{id}``: the job record (404 if there is no such job)."""
    rec = await request.app[CLIENT].job(params.job_id(request)).info()
    if rec.status is JobStatus.NOT_FOUND:
        raise ApiError(
            404,
            "job_not_found",
            f"job {rec.job_id} not found (never enqueued, or its result expired)",
            {"job_id": rec.job_id},
        )
    return json_response(job_body(rec, full_paths=request.app[SETTINGS].show_traceback_paths))


async def get_result(request: web.Request) -> web.Response:
    """``GET /api/jobs/{id}/result?timeout=S``: waits up to S s (at most 60) for the outcome.

    200 with the record (``result`` or ``error``) once finished; 202 with the record if it is
    still running when the wait ends; 404 if there is no such job.
    """
    timeout = params.number(request, "timeout", 0.0, 0.0, MAX_WAIT_S)
    handle = request.app[CLIENT].job(params.job_id(request))
    with contextlib.suppress(JobFailed, TimeoutError):  # the record says how it ended, or that it has not
        await handle.result(timeout=timeout)
    rec = await handle.info()
    if rec.status is JobStatus.NOT_FOUND:  # result() raised JobNotFound unless it expired meanwhile
        raise ApiError(404, "job_not_found", f"job {rec.job_id} not found", {"job_id": rec.job_id})
    full_paths = request.app[SETTINGS].show_traceback_paths
    return json_response(job_body(rec, full_paths=full_paths), status=200 if rec.status.finished else 202)


async def abort(request: web.Request) -> web.Response:
    """``POST /api/jobs/{id}/abort?timeout=S``: abort a queued or running job.

    200 ``{"aborted": true}`` once it is aborted (or was already); 202 with ``false`` if a
    running job has not stopped within S s; 409 if it had already finished otherwise.
    """
    timeout = params.number(request, "timeout", 5.0, 0.0, MAX_WAIT_S)
    handle = request.app[CLIENT].job(params.job_id(request))
    rec = await handle.info()
    if rec.status is JobStatus.NOT_FOUND:
        raise ApiError(404, "job_not_found", f"job {rec.job_id} not found", {"job_id": rec.job_id})
    if rec.status.finished and rec.status is not JobStatus.ABORTED:
        raise ApiError(
            409,
            "already_finished",
            f"job {rec.job_id} already ended with status {rec.status.value}",
            {"job_id": rec.job_id, "status": rec.status.value},
        )
    try:
        aborted = await handle.abort(timeout=timeout)
    except JobAborted:
        aborted = True
    rec = await handle.info()
    return json_response(
        {"job_id": rec.job_id, "aborted": aborted, "status": rec.status.value}, status=200 if aborted else 202
    )
