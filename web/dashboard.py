"""The dashboard: a static single-page app under ``/`` and its data endpoints under
``/api/dashboard/`` (in the API's route table, :mod:`web.routes`), plus the live event
stream ``/dashboard/events``.

Security model
--------------
* The page shell and its assets are public; they hold no data. Every data request carries
  ``Authorization: Bearer <token>`` (kept in the tab's ``sessionStorage``) when
  ``ASYNCJOBS_API_TOKEN`` is set, checked by the API's one auth middleware.
* ``EventSource`` cannot send headers, so the page first POSTs for a *ticket*
  (:mod:`web.tickets`), valid a minute and only for opening the event stream; on every
  reconnect the page gets a fresh one.
* Cross-site request forgery: every unsafe request to ``/api/`` is refused when the browser
  says it comes from another site (``web.middlewares.cross_site_middleware``), and must carry a
  JSON body or the ``X-Asyncjobs-Request`` header (``web.middlewares.unsafe_request_middleware``),
  which a cross-site form cannot send; the dashboard's own actions require that header. A
  bearer token is never sent automatically by a browser, so with a token set forged requests
  fail authentication as well.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from asyncjobs import events
from asyncjobs.client import JobHandle
from asyncjobs.records import JobStatus
from web import dashboard_queries as q
from web import params, sse
from web.middlewares import require_page_header
from web.responses import json_response
from web.state import CLIENT, CRON_JOBS, SETTINGS, STORE
from web.tickets import TICKET_TTL_S, make_ticket
from web.tracebacks import scrub_record

HERE = Path(__file__).parent
STATIC = HERE / "static"
TICK_S = 1.0
STREAM_HEADERS = {"X-Accel-Buffering": "no", "Cache-Control": "no-store"}
FEED_PER_TICK = 25  # events forwarded per second on the global feed; the rest are only counted
MAX_CURSOR = 10**12
MAX_LIMIT = 200


# --- handlers ---------------------------------------------------------------------------
async def index(request: web.Request) -> web.FileResponse:
    """``GET /``: the page shell (public: it holds no data)."""
    return web.FileResponse(
        STATIC / "index.html",
        headers={
            "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
            "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )


async def overview(request: web.Request) -> web.Response:
    """``GET /api/dashboard/overview``: counts per queue, workers online, dead letters."""
    return json_response(await q.overview(request.app[STORE]))


async def jobs(request: web.Request) -> web.Response:
    """``GET /api/dashboard/jobs``: a page of jobs, waiting ones first, filtered."""
    flt = q.JobFilter(*(params.text(request, k) for k in ("state", "queue", "function", "q")))
    cursor = params.page_number(request, "cursor", 0, 0, MAX_CURSOR)
    limit = params.page_number(request, "limit", 50, 1, MAX_LIMIT)
    return json_response(await q.list_jobs(request.app[STORE], flt, cursor=cursor, limit=limit))


async def cron(request: web.Request) -> web.Response:
    """``GET /api/dashboard/cron``: the cron jobs given to ``create_app``, next and last runs."""
    cron_jobs: tuple[Any, ...] = request.app[CRON_JOBS]
    return json_response({"cron": await q.cron_table(request.app[CLIENT], cron_jobs)})


async def ticket(request: web.Request) -> web.Response:
    """``POST /api/dashboard/ticket``: a ticket for the event stream (:mod:`web.tickets`)."""
    require_page_header(request)
    token = request.app[SETTINGS].api_token
    return json_response({"ticket": make_ticket(token) if token else "", "expires_in": TICKET_TTL_S})


async def retry_all(request: web.Request) -> web.Response:
    """``POST /api/dashboard/dead/retry-all``: enqueue every dead letter again."""
    require_page_header(request)
    client = request.app[CLIENT]
    retried: list[str] = []
    failed: list[dict[str, str]] = []
    while True:
        _, entries = await client.dead_letters(offset=len(failed), limit=200)
        if not entries:
            break
        for entry in entries:
            try:
                await client.retry_dead(entry.job_id)
                retried.append(entry.job_id)
            except Exception as e:  # one bad entry must not stop the rest; report it
                failed.append({"job_id": entry.job_id, "error": str(e)[:200]})
    return json_response({"retried": len(retried), "failed": failed})


async def purge(request: web.Request) -> web.Response:
    """``POST /api/dashboard/dead/purge``: delete every dead letter."""
    require_page_header(request)
    return json_response({"purged": await request.app[STORE].purge_dead()})


# --- live events ------------------------------------------------------------------------
async def stream(request: web.Request) -> web.StreamResponse:
    """``/dashboard/events``: the overview feed, or with ``?job=<id>`` one job's events. A job
    stream sends the job's record (``snapshot``), its events (``job``) and, once the job has
    ended or if it does not exist, ``end`` and closes; the page then stops reconnecting.
    (The auth middleware accepts a ticket here, and only here.)"""
    job_id = request.query.get("job")
    if job_id is None:
        return await _global_stream(request)
    return await _job_stream(request, request.app[CLIENT].job(job_id))  # client.job validates the id


async def _global_stream(request: web.Request) -> web.StreamResponse:
    # subscribe before the response starts: once the browser sees the stream open, nothing
    # published afterwards can be missed (the page reloads its data on open)
    async with (
        request.app[STORE].all_events() as queue,
        sse.open_stream(request, queue, STREAM_HEADERS) as out,
    ):
        await _global_feed(out)
    return out.response


async def _job_stream(request: web.Request, handle: JobHandle[Any]) -> web.StreamResponse:
    rec = await handle.info()
    async with sse.open_stream(request, asyncio.Queue(), STREAM_HEADERS) as out:
        await out.send("snapshot", scrub_record(rec.as_dict(), full_paths=request.app[SETTINGS].show_traceback_paths))
        ended = rec.status.finished or rec.status is JobStatus.NOT_FOUND

        async def relay(kind: str, event: dict[str, Any]) -> None:
            await out.send("job", event)

        if ended or await sse.follow_job(out, handle, relay):
            await out.send("end", {"job_id": handle.id})
    return out.response


async def _global_feed(out: sse.Stream) -> None:
    """Once a second: counts of completed and failed jobs, plus a sample of the events."""
    loop = asyncio.get_running_loop()
    await out.send("hello", {"ts": int(time.time() * 1000)})
    while not out.gone():
        end = loop.time() + TICK_S
        counts = {events.COMPLETE: 0, events.FAILED: 0}
        sample: list[dict[str, Any]] = []
        while (left := end - loop.time()) > 0:
            event = await events.next_event(out.queue, left)
            if event is sse.END:
                return
            if event is None:
                break
            kind = event.get("event")
            if kind in counts:
                counts[kind] += 1
            if kind != events.PROGRESS and len(sample) < FEED_PER_TICK:
                event.pop("channel", None)
                sample.append(event)
        await out.send("tick", {"ts": int(time.time() * 1000), **counts, "events": sample})
