"""``GET /api/jobs/{id}/events``: a job's progress and state changes as server-sent events.

The stream opens with a ``state`` event (the current record), then relays the job's events
from the app's one shared pub/sub connection, and ends after the terminal event (complete,
failed or aborted). Pings keep proxies from closing it; ``X-Accel-Buffering: no`` keeps
nginx from buffering it; streams still open at shutdown are ended.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from asyncjobs import events
from asyncjobs.client import JobHandle
from asyncjobs.records import JobStatus
from web import params
from web.responses import ApiError, dumps
from web.state import CLIENT, SSE_PING_S, SSE_STREAMS

CHECK_S = 0.25  # how often a quiet stream checks that its client is still there
HEADERS = {"X-Accel-Buffering": "no", "Cache-Control": "no-cache"}


async def job_events(request: web.Request) -> web.StreamResponse:
    """Stream the job's events until it ends (404 before streaming if there is no such job)."""
    handle = request.app[CLIENT].job(params.job_id(request))
    rec = await handle.info()
    if rec.status is JobStatus.NOT_FOUND:
        raise ApiError(404, "job_not_found", f"job {rec.job_id} not found", {"job_id": rec.job_id})
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    pump = asyncio.get_running_loop().create_task(_pump(handle, queue))
    try:
        async with sse_response(request, headers=HEADERS) as resp:
            resp.ping_interval = request.app[SSE_PING_S]
            request.app[SSE_STREAMS].add(resp)
            await _send(resp, "state", rec.as_dict())
            await _relay(resp, queue)
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
    return resp


async def _pump(handle: JobHandle[Any], queue: asyncio.Queue[dict[str, Any]]) -> None:
    try:
        async for event in handle.events():
            queue.put_nowait(event)
    except Exception as e:  # Redis lost mid-stream: tell the client, then end
        queue.put_nowait({"job_id": handle.id, "event": "error", "message": f"event stream interrupted: {e}"})


async def _relay(resp: EventSourceResponse, queue: asyncio.Queue[dict[str, Any]]) -> None:
    while resp.is_connected():
        event = await events.next_event(queue, CHECK_S)
        if event is None:
            continue
        event.pop("channel", None)
        kind = str(event.get("event", "message"))
        await _send(resp, kind, event)
        if kind in events.TERMINAL or kind in ("not_found", "error"):
            return


async def _send(resp: EventSourceResponse, kind: str, data: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionResetError):
        await resp.send(dumps(data).decode(), event=kind)
