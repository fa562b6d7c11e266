"""Serving the app on a TCP port, bounded against slow and numerous clients.

* Headers: aiohttp closes a connection that has not sent a complete request within its
  keep-alive timeout, counted from the moment it connects (and between requests); that
  timeout is ``Settings.header_timeout``, so a client trickling header lines is cut off.
* Bodies: :func:`web.params.json_body` reads within ``Settings.body_timeout``.
* Connections: at most ``Settings.max_connections`` (by default half the open-file limit,
  less a reserve, since a request may also hold a Redis connection), so the process does not
  run out of file descriptors. At the limit a new connection replaces the oldest one that has
  not sent a request yet, or is answered 503 and closed (:class:`ConnectionCap`).
* Accept errors (``EMFILE`` and the like) are logged once per :data:`LOG_EVERY_S` with a
  count, not once per attempt with a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import resource
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.http import HttpProcessingError

from asyncjobs.config import Settings

logger = logging.getLogger(__name__)

FD_RESERVE = 32  # descriptors kept for the listening socket, logs, Redis and the like
LOG_EVERY_S = 10.0
# connections the kernel queues until they are accepted: a burst beyond it drops SYNs, and
# the dropped client (perhaps a health probe) retries only after a second or more
BACKLOG = 1024
PENDING_S = 5.0  # a handler not connected within this long never will be
RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
BUSY_BODY = (
    b'{"error":{"code":"too_many_connections","message":"the server has too many open connections; '
    b'retry shortly","details":null}}'
)
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Retry-After: 1\r\nContent-Length: %d\r\n\r\n%s" % (len(BUSY_BODY), BUSY_BODY)
)


def connection_limit(settings: Settings) -> int:
    """``settings.max_connections``, or half the open-file limit less a reserve."""
    if settings.max_connections:
        return settings.max_connections
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(8, (soft - FD_RESERVE) // 2)


class _Busy(asyncio.Protocol):
    """Answers 503 and closes: the connection over the limit costs a descriptor for a moment."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(BUSY_RESPONSE)
        transport.close()


class ConnectionCap:
    """A protocol factory for ``server`` that keeps at most ``limit`` connections open.

    At the limit, the oldest connection that has not sent a complete request yet (a slow
    client, or one that never will) is closed to make room; if every connection has sent a
    request, the new one is answered 503 and closed. Legitimate clients, which send their
    request at once, are served during a slowloris attack instead of being locked out.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.server: web.Server | None = None  # set by attach() once the runner has made it
        # handlers made but not yet connected: the event loop accepts a burst of connections
        # before any of them reaches ``server.connections``; one leaves as it connects (see
        # :meth:`attach`), since one that connects and is gone by the next call looks unconnected
        self.pending: dict[web.RequestHandler, float] = {}
        # (aiohttp's handlers take no weak references: both sets are pruned to the open ones)
        self.served: set[web.RequestHandler] = set()  # sent a complete request
        self.evicted: set[web.RequestHandler] = set()  # closed to make room, not gone yet
        self.refused = RateLimitedLog("refusing connections: %d open, the limit is %d (ASYNCJOBS_MAX_CONNECTIONS)")
        self.cut = RateLimitedLog("closing connections that sent no request to make room: %d open, the limit is %d")

    def attach(self, server: web.Server) -> None:
        """Serve with ``server``'s handlers, learning from it when each one connects."""
        self.server = server
        made = server.connection_made

        def connection_made(handler: web.RequestHandler, transport: asyncio.Transport) -> None:
            self.pending.pop(handler, None)
            made(handler, transport)

        server.connection_made = connection_made  # type: ignore[method-assign]

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Marks the connection as one that sent a complete request."""
        self.served.add(request.protocol)
        response: web.StreamResponse = await handler(request)
        return response

    def __call__(self) -> asyncio.BaseProtocol:
        assert self.server is not None
        now = time.monotonic()
        for handler, made in list(self.pending.items()):
            if now - made > PENDING_S:  # its connection failed before it was made
                del self.pending[handler]
        everyone = self.server.connections
        self.served.intersection_update(everyone)
        self.evicted.intersection_update(everyone)
        connections = [h for h in everyone if h not in self.evicted]
        open_now = len(connections) + len(self.pending)
        if open_now >= self.limit:
            victim = next((h for h in connections if h not in self.served and h.transport is not None), None)
            if victim is not None:
                self.cut.emit(open_now, self.limit)
                self.evicted.add(victim)
                victim.force_close()
            elif not self.pending or open_now >= self.limit + self.limit // 4 + 1:
                self.refused.emit(open_now, self.limit)
                return _Busy()
            # else: part of a burst the loop accepted before any of it connected; some may be
            # silent and evictable in a moment, so a bounded overshoot beats refusing
        handler = self.server()
        self.pending[handler] = now
        return handler


class RateLimitedLog:
    """A warning logged at most once per ``every`` seconds, with how many were held back."""

    def __init__(self, message: str, every: float = LOG_EVERY_S) -> None:
        self.message, self.every = message, every
        self.last = float("-inf")
        self.held = 0

    def due(self) -> str | None:
        """``None`` if the last report is too recent (counted), else the "n more" suffix."""
        now = time.monotonic()
        if now - self.last < self.every:
            self.held += 1
            return None
        more = f" ({self.held} more since the last report)" if self.held else ""
        self.last, self.held = now, 0
        return more

    def emit(self, *args: Any) -> None:
        more = self.due()
        if more is not None:
            logger.warning(self.message + more, *args)


class MalformedRequestLog(logging.Filter):
    """On aiohttp's server logger: a request that cannot be parsed (bad request line, header
    too long...) is the client's error, answered 400; log it as one line at most once per
    interval instead of a traceback per request."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = RateLimitedLog("malformed request answered 400: %s")

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        more = self.gate.due()
        if more is None:
            return False
        record.msg, record.args = self.gate.message + more, (str(exc.message)[:80],)
        record.exc_info, record.exc_text, record.levelno, record.levelname = None, None, logging.INFO, "INFO"
        return True


def accept_error_handler(loop: asyncio.AbstractEventLoop) -> None:
    """Log the event loop's accept failures for lack of resources (``EMFILE``...) once per
    interval, without a traceback; other errors go to the default handler."""
    log = RateLimitedLog("cannot accept connections: %s")

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in RESOURCE_ERRNOS:
            log.emit(exc.strerror or exc)
            return
        if isinstance(exc, ValueError) and "_start_serving" in repr(context.get("handle")):
            # asyncio (before CPython gh-151615) schedules one accept retry per failed
            # attempt; those left over when the listener closes fail on its closed socket
            logger.debug("accept retry after the listener closed: %s", exc)
            return
        loop.default_exception_handler(context)

    loop.set_exception_handler(handle)


async def _serve(app: web.Application, host: str, port: int, settings: Settings, ready: Callable[[], None]) -> None:
    runner = web.AppRunner(
        app,
        handle_signals=True,
        access_log=None,
        keepalive_timeout=settings.header_timeout,
        max_line_size=8190,
        max_field_size=8190,
    )
    cap = ConnectionCap(connection_limit(settings))
    app.middlewares.insert(0, cap.middleware)
    quiet = MalformedRequestLog()
    logging.getLogger("aiohttp.server").addFilter(quiet)
    await runner.setup()
    listener = None
    try:
        assert runner.server is not None  # made by setup()
        cap.attach(runner.server)
        loop = asyncio.get_running_loop()
        accept_error_handler(loop)
        listener = await loop.create_server(cap, host, port, backlog=BACKLOG, reuse_address=True)
        ready()
        await asyncio.Event().wait()  # until SIGINT/SIGTERM raise GracefulExit
    finally:
        if listener is not None:
            listener.close()
        await runner.cleanup()
        logging.getLogger("aiohttp.server").removeFilter(quiet)


def serve(app: web.Application, host: str, port: int, settings: Settings, ready: Callable[[], None]) -> None:
    """Serve ``app`` until SIGINT/SIGTERM (like ``web.run_app``, with the bounds above)."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    main = loop.create_task(_serve(app, host, port, settings, ready))
    try:
        loop.run_until_complete(main)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        if not main.done():
            main.cancel()
            with contextlib.suppress(asyncio.CancelledError, web.GracefulExit):
                loop.run_until_complete(main)
        rest = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in rest:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*rest, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
        asyncio.set_event_loop(None)
        loop.close()
