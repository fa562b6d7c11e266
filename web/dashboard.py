"""The dashboard: a static single-page app under ``/`` plus a few dashboard-only endpoints.

Security model
--------------
* The page shell and its assets are public; they hold no data. Every data request carries
  ``Authorization: Bearer <token>`` (kept in the tab's ``sessionStorage``) when
  ``ASYNCJOBS_API_TOKEN`` is set.
* ``EventSource`` cannot send headers, so the page first POSTs for a *ticket*: an HMAC of an
  expiry time keyed by the API token, valid ``TICKET_TTL_S`` seconds and only for opening the
  event stream. A leaked ticket (it is in a URL) is useless a minute later and never grants
  any other request. On every reconnect the page gets a fresh ticket.
* Cross-site request forgery: every unsafe request to ``/api/`` is refused when the browser
  says it comes from another site (``Sec-Fetch-Site: cross-site`` or an ``Origin`` that is not
  this host), and must carry a JSON body or the ``X-Asyncjobs-Request`` header
  (``web.middlewares.unsafe_request_middleware``), which a cross-site form cannot send; the
  dashboard's own actions require that header. A bearer token is never sent automatically by a
  browser, so with a token set forged requests fail authentication as well.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
from aiohttp import web

from asyncjobs import events, keys
from asyncjobs.client import Client
from asyncjobs.config import Settings
from asyncjobs.records import JobStatus
from web import dashboard_queries as q
from web import sse
from web.middlewares import CSRF_HEADER, bearer_matches
from web.responses import ApiError, error_response
from web.state import CLIENT, REGISTRY, SETTINGS
from web.tracebacks import scrub_record

HERE = Path(__file__).parent
STATIC = HERE / "static"
TICKET_TTL_S = 60
TICK_S = 1.0
STREAM_HEADERS = {"X-Accel-Buffering": "no", "Cache-Control": "no-store"}
FEED_PER_TICK = 25  # events forwarded per second on the global feed; the rest are only counted

CRON_JOBS = web.AppKey("dashboard_cron_jobs", list)


def setup_dashboard(app: web.Application, *, cron_jobs: list[Any] | None = None) -> None:
    """Register the dashboard's page, assets and endpoints on ``app`` (called by ``create_app``)."""
    app[CRON_JOBS] = list(cron_jobs) if cron_jobs is not None else _find_cron_jobs(app)
    app.middlewares.insert(0, csrf_middleware)
    app.router.add_get("/", index)
    app.router.add_static("/dashboard/static", STATIC, append_version=True)
    app.router.add_get("/api/dashboard/overview", overview)
    app.router.add_get("/api/dashboard/jobs", jobs)
    app.router.add_get("/api/dashboard/cron", cron)
    app.router.add_post("/api/dashboard/ticket", ticket)
    app.router.add_post("/api/dashboard/dead/retry-all", retry_all)
    app.router.add_post("/api/dashboard/dead/purge", purge)
    app.router.add_get("/dashboard/events", stream)


# --- state owned by the API app (web.state) ---------------------------------------------
def _client(request: web.Request) -> Client:
    return request.app[CLIENT]


def _settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def _find_cron_jobs(app: web.Application) -> list[Any]:
    """The settings module that owns the app's registry also lists its ``CRON_JOBS``."""
    registry = app[REGISTRY]
    for module in list(sys.modules.values()):
        if getattr(module, "REGISTRY", None) is registry:
            return list(getattr(module, "CRON_JOBS", []))
    return []


# --- security ---------------------------------------------------------------------------
def _error(status: int, code: str, message: str) -> web.Response:
    return error_response(status, code, message)


def _cross_site(request: web.Request) -> bool:
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return origin == "null" or urlparse(origin).netloc != request.host


@web.middleware
async def csrf_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    if request.method not in ("GET", "HEAD", "OPTIONS") and request.path.startswith("/api/") and _cross_site(request):
        return _error(403, "cross_site", "cross-site requests may not change state")
    response: web.StreamResponse = await handler(request)
    return response


def _authorized(request: web.Request) -> bool:
    token = _settings(request).api_token
    if not token:
        return True
    return bearer_matches(request, token.encode())


def _guard(request: web.Request, *, unsafe: bool = False) -> None:
    if not _authorized(request):
        raise ApiError(401, "unauthorized", "missing or bad token: send 'Authorization: Bearer <token>'")
    if unsafe and request.headers.get(CSRF_HEADER) != "1":
        raise ApiError(403, "csrf", f"send the '{CSRF_HEADER}: 1' header")


def _sign(token: str, expiry: int) -> str:
    return hmac.new(token.encode(), f"sse:{expiry}".encode(), hashlib.sha256).hexdigest()


def make_ticket(token: str, now: float | None = None) -> str:
    expiry = int((now or time.time()) + TICKET_TTL_S)
    return f"{expiry}.{_sign(token, expiry)}"


def check_ticket(token: str, ticket: str, now: float | None = None) -> bool:
    expiry_s, _, sig = ticket.partition(".")
    # ASCII digits only (int() also takes other scripts' digits) and short enough for int()
    if not (expiry_s.isascii() and expiry_s.isdigit() and len(expiry_s) <= 12) or int(expiry_s) < (now or time.time()):
        return False
    return hmac.compare_digest(sig.encode(), _sign(token, int(expiry_s)).encode())


# --- handlers ---------------------------------------------------------------------------
async def index(request: web.Request) -> web.FileResponse:
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


def _json(data: Any) -> web.Response:
    return web.Response(body=orjson.dumps(data, default=str), content_type="application/json")


async def overview(request: web.Request) -> web.Response:
    _guard(request)
    client = _client(request)
    return _json(await q.overview(client, list(client.queues)))


def _int(request: web.Request, name: str, default: int, high: int) -> int:
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 15):  # int() also takes other scripts' digits
        raise ApiError(400, "bad_request", f"{name} must be a whole number (at most 15 digits)", {"parameter": name})
    return min(int(raw), high)


async def jobs(request: web.Request) -> web.Response:
    _guard(request)
    flt = q.JobFilter(*(request.query.get(k, "").strip()[:200] for k in ("state", "queue", "function", "q")))
    cursor = _int(request, "cursor", 0, 10**12)
    limit = max(1, _int(request, "limit", 50, 200))
    client = _client(request)
    return _json(await q.list_jobs(client, flt, queues=list(client.queues), cursor=cursor, limit=limit))


async def cron(request: web.Request) -> web.Response:
    _guard(request)
    cron_jobs = request.app[CRON_JOBS]
    return _json({"cron": await q.cron_table(_client(request), cron_jobs)})


async def ticket(request: web.Request) -> web.Response:
    _guard(request, unsafe=True)
    token = _settings(request).api_token
    return _json({"ticket": make_ticket(token) if token else "", "expires_in": TICKET_TTL_S})


async def retry_all(request: web.Request) -> web.Response:
    _guard(request, unsafe=True)
    client = _client(request)
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
    return _json({"retried": len(retried), "failed": failed})


async def purge(request: web.Request) -> web.Response:
    _guard(request, unsafe=True)
    return _json({"purged": await _client(request).purge_dead()})


# --- live events ------------------------------------------------------------------------
async def stream(request: web.Request) -> web.StreamResponse:
    """``/dashboard/events``: the overview feed, or with ``?job=<id>`` one job's events. A job
    stream sends the job's record (``snapshot``), its events (``job``) and, once the job has
    ended or if it does not exist, ``end`` and closes; the page then stops reconnecting."""
    token = _settings(request).api_token
    if token and not (_authorized(request) or check_ticket(token, request.query.get("ticket", ""))):
        return _error(401, "unauthorized", "missing or expired ticket: POST /api/dashboard/ticket for a new one")
    client = _client(request)
    job_id = request.query.get("job")
    if job_id is None:
        return await _global_stream(request, client)
    return await _job_stream(request, client.job(job_id))  # client.job validates the id


async def _global_stream(request: web.Request, client: Client) -> web.StreamResponse:
    # subscribe before the response starts: once the browser sees the stream open, nothing
    # published afterwards can be missed (the page reloads its data on open)
    async with (
        client.hub.subscribe(keys.EVENTS_PATTERN, pattern=True) as queue,
        sse.open_stream(request, queue, STREAM_HEADERS) as out,
    ):
        await _global_feed(out)
    return out.response


async def _job_stream(request: web.Request, handle: Any) -> web.StreamResponse:
    rec = await handle.info()
    async with sse.open_stream(request, asyncio.Queue(), STREAM_HEADERS) as out:
        await out.send("snapshot", scrub_record(rec.as_dict(), full_paths=_settings(request).show_traceback_paths))
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
