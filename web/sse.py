"""Server-sent event streams: ``GET /api/jobs/{id}/events`` and the registry every stream of the
app (the dashboard's too) lives in.

A job stream opens with a ``state`` event (the current record), then relays the job's events
from the process's one shared subscription (:meth:`asyncjobs.events.EventHub.job_events`), and
ends after the terminal event (complete, failed or aborted). An idle stream costs no timer and
no Redis command of its own.

Every open stream is a :class:`Stream` in one ``WeakSet`` (``SSE_STREAMS``), as aiohttp-sse
recommends. One sweeper task per app ends the streams whose client went away (within
``SWEEP_S``), which releases their share of the subscription; at shutdown every stream is
ended. Pings keep proxies from closing a quiet stream; ``X-Accel-Buffering: no`` keeps nginx
from buffering it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp_sse import EventSourceResponse

from asyncjobs import events
from asyncjobs.client import JobHandle
from asyncjobs.records import JobStatus
from web import params
from web.responses import ApiError, dumps
from web.state import CLIENT, SETTINGS, SSE_PING_S, SSE_STREAMS
from web.tracebacks import scrub_record

SWEEP_S = 1.0  # how often the sweeper looks for streams whose client went away
HEADERS = {"X-Accel-Buffering": "no", "Cache-Control": "no-cache"}
END: dict[str, Any] = {"event": "_end"}  # put on a stream's queue to end it (never sent)

Send = Callable[[str, dict[str, Any]], Awaitable[None]]


class Stream:
    """One open event stream: the request, its response and the queue its handler reads.
    :meth:`end` (the sweeper, shutdown) makes the handler return."""

    __slots__ = ("__weakref__", "queue", "request", "response")

    def __init__(self, request: web.Request, response: EventSourceResponse, queue: asyncio.Queue[Any]) -> None:
        self.request = request
        self.response = response
        self.queue = queue

    def gone(self) -> bool:
        """True once the client has disconnected (or the response stopped streaming)."""
        transport = self.request.transport
        return transport is None or transport.is_closing() or not self.response.is_connected()

    def end(self) -> None:
        self.queue.put_nowait(END)

    async def send(self, kind: str, data: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionResetError):
            await self.response.send(dumps(data).decode(), event=kind)


@contextlib.asynccontextmanager
async def open_stream(
    request: web.Request, queue: asyncio.Queue[Any], headers: dict[str, str] = HEADERS
) -> AsyncIterator[Stream]:
    """Start the event-stream response and register it; on exit, unregister and close it."""
    resp = EventSourceResponse(headers=headers)
    resp.ping_interval = request.app[SSE_PING_S]
    await resp.prepare(request)
    stream = Stream(request, resp, queue)
    streams = request.app[SSE_STREAMS]
    streams.add(stream)
    try:
        yield stream
    finally:
        streams.discard(stream)
        resp.stop_streaming()
        with contextlib.suppress(Exception):
            await resp.wait()


async def job_events(request: web.Request) -> web.StreamResponse:
    """Stream the job's events until it ends (404 before streaming if there is no such job)."""
    handle = request.app[CLIENT].job(params.job_id(request))
    rec = await handle.info()
    if rec.status is JobStatus.NOT_FOUND:
        raise ApiError(404, "job_not_found", f"job {rec.job_id} not found", {"job_id": rec.job_id})
    async with open_stream(request, asyncio.Queue()) as stream:
        await stream.send("state", scrub_record(rec.as_dict(), full_paths=request.app[SETTINGS].show_traceback_paths))
        await follow_job(stream, handle, stream.send)
    return stream.response


async def follow_job(stream: Stream, handle: JobHandle[Any], send: Send) -> bool:
    """Relay ``handle.events()`` to ``send(kind, event)`` until the job's terminal event (True)
    or until the stream is ended (client gone, shutdown) or the events are interrupted (False)."""
    pump = asyncio.get_running_loop().create_task(_pump(handle, stream.queue))
    try:
        while (event := await stream.queue.get()) is not END:
            event.pop("channel", None)
            kind = str(event.get("event", "message"))
            await send(kind, event)
            if kind in events.TERMINAL or kind == "not_found":
                return True
            if kind == "error":
                return False
        return False
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump


async def _pump(handle: JobHandle[Any], queue: asyncio.Queue[Any]) -> None:
    try:
        async for event in handle.events():
            queue.put_nowait(event)
    except Exception as e:  # Redis lost mid-stream: tell the client, then end
        queue.put_nowait({"job_id": handle.id, "event": "error", "message": f"event stream interrupted: {e}"})


def end_streams(app: web.Application) -> None:
    """End every open stream (at shutdown, so the server stops at once; clients reconnect)."""
    streams = app[SSE_STREAMS]
    for stream in list(streams):
        stream.end()


async def streams_context(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: the sweeper that ends streams whose client went away."""
    sweeper = asyncio.get_running_loop().create_task(_sweep(app), name="asyncjobs-sse-sweeper")
    try:
        yield
    finally:
        sweeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sweeper


async def _sweep(app: web.Application) -> None:
    streams = app[SSE_STREAMS]
    while True:
        await asyncio.sleep(SWEEP_S)
        for stream in list(streams):
            if stream.gone():
                stream.end()
