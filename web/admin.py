"""Handlers for the deployment as a whole: queues, workers, functions and dead letters."""

from __future__ import annotations

from aiohttp import web

from asyncjobs.client import check_job_id
from asyncjobs.errors import ConfigError, DuplicateJob, JobFailed
from asyncjobs.records import JobRecord, JobStatus
from web import params
from web.jobs import job_body
from web.responses import ApiError, json_response
from web.state import CLIENT, SCHEMAS, SETTINGS


async def list_queues(request: web.Request) -> web.Response:
    """``GET /api/queues``: counts per served queue."""
    stats = await request.app[CLIENT].queue_stats(list(request.app[SETTINGS].queues))
    return json_response({"queues": [s.as_dict() for s in stats]})


async def list_workers(request: web.Request) -> web.Response:
    """``GET /api/workers``: workers seen in the last minute."""
    return json_response({"workers": await request.app[CLIENT].workers()})


async def list_functions(request: web.Request) -> web.Response:
    """``GET /api/functions``: every registered function with the JSON Schema of its parameters."""
    out = []
    for fs in request.app[SCHEMAS].all():
        f = fs.function
        out.append(
            {
                "name": f.name,
                "doc": (f.__doc__ or "").strip() or None,
                "queue": f.opts.queue,
                "timeout": f.opts.timeout,
                "retries": f.opts.retries,
                "parameters": fs.json_schema,
            }
        )
    return json_response({"functions": out})


async def list_dead(request: web.Request) -> web.Response:
    """``GET /api/dead?offset=&limit=``: dead-lettered jobs, newest first."""
    offset = params.number(request, "offset", 0, 0, 1_000_000, integer=True)
    limit = params.number(request, "limit", 50, 1, 500, integer=True)
    total, entries = await request.app[CLIENT].dead_letters(offset=offset, limit=limit)
    return json_response({"total": total, "offset": offset, "items": [e.as_dict() for e in entries]})


async def retry_dead(request: web.Request) -> web.Response:
    """``POST /api/dead/{id}/retry``: enqueue the job again under its id (202)."""
    raw = request.match_info["id"]
    try:
        job_id = check_job_id(raw)
    except ConfigError as e:
        raise ApiError(422, "invalid_job_id", str(e), {"job_id": raw[:128]}) from None
    client = request.app[CLIENT]
    try:
        handle = await client.retry_dead(job_id)
    except JobFailed as e:
        raise ApiError(409, "not_retryable", str(e), {"job_id": job_id}) from None
    except DuplicateJob:
        raise ApiError(
            409,
            "conflict",
            f"job {job_id} is queued or running again already; wait for it to finish",
            {"job_id": job_id},
        ) from None
    rec = JobRecord(handle.id, JobStatus.QUEUED, queue=handle.queue)
    return json_response(job_body(rec), status=202)
