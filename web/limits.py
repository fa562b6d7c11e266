"""Handlers for flow control: the limits and their use, and pausing or resuming a queue or a
function (state changes: token-protected like every other, no body needed)."""

from __future__ import annotations

from aiohttp import web

from asyncjobs.client import check_queue
from asyncjobs.errors import ConfigError
from web.middlewares import CSRF_HEADER
from web.responses import ApiError, json_response
from web.state import REGISTRY, SETTINGS, STORE


async def list_limits(request: web.Request) -> web.Response:
    """``GET /api/limits``: every limited or paused function with its limits and their use, and
    what is paused."""
    store = request.app[STORE]
    states = await store.limits()
    return json_response({"limits": [s.as_dict() for s in states], "paused": await store.paused()})


def _proven(request: web.Request) -> None:
    """The ``X-Asyncjobs-Request`` header, when sent, says ``1`` (its documented value)."""
    value = request.headers.get(CSRF_HEADER)
    if value is not None and value != "1":
        raise ApiError(422, "invalid_header", f"the {CSRF_HEADER} header must be 1", {"header": CSRF_HEADER})


def _queue(request: web.Request) -> str:
    _proven(request)
    raw = request.match_info["name"]
    try:
        name = check_queue(raw)
    except ConfigError as e:
        raise ApiError(422, "invalid_queue", str(e), {"queue": raw[:80]}) from None
    if name not in request.app[SETTINGS].queues:
        served = ", ".join(request.app[SETTINGS].queues)
        raise ApiError(
            404, "queue_not_found", f"queue {name!r} is not one of this deployment's: {served}", {"queue": name}
        )
    return name


def _function(request: web.Request) -> str:
    _proven(request)
    name = request.match_info["name"]
    if name not in request.app[REGISTRY]:
        raise ApiError(
            404,
            "function_not_found",
            f"function {name[:80]!r} is not registered: GET /api/functions lists them",
            {"function": name[:80]},
        )
    return name


async def pause_queue(request: web.Request) -> web.Response:
    """``POST /api/queues/{name}/pause``: workers stop starting the queue's jobs."""
    name = _queue(request)
    await request.app[STORE].pause(queue=name)
    return json_response({"queue": name, "paused": True})


async def resume_queue(request: web.Request) -> web.Response:
    """``POST /api/queues/{name}/resume``: workers start the queue's jobs again, at once."""
    name = _queue(request)
    await request.app[STORE].resume(queue=name)
    return json_response({"queue": name, "paused": False})


async def pause_function(request: web.Request) -> web.Response:
    """``POST /api/functions/{name}/pause``: the function's jobs wait (parked) until resumed."""
    name = _function(request)
    await request.app[STORE].pause(function=name)
    return json_response({"function": name, "paused": True, "resumed_jobs": 0})


async def resume_function(request: web.Request) -> web.Response:
    """``POST /api/functions/{name}/resume``: its parked jobs are due again at once."""
    name = _function(request)
    n = await request.app[STORE].resume(function=name)
    return json_response({"function": name, "paused": False, "resumed_jobs": n})
