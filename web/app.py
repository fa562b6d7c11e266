"""The aiohttp application factory and its typed state.

``create_app(settings, registry, cron_jobs=...)`` builds the app; its Redis broker,
:class:`Client`, :class:`JobStore` and the one shared :class:`EventHub` (a single pub/sub
connection for every waiting request) live in ``cleanup_ctx``. Handlers read them through
the ``AppKey``\\ s below.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Iterable
from typing import Any

from aiohttp import web

from asyncjobs.client import Client
from asyncjobs.config import Settings
from asyncjobs.connections import Broker, create_broker, refuse_cluster, wait_until_reachable
from asyncjobs.errors import ConfigError
from asyncjobs.registry import Registry
from web import middlewares, sse
from web.metrics import Metrics
from web.middlewares import is_loopback
from web.routes import ROUTES
from web.schemas import Schemas
from web.state import (
    BROKER,
    CLIENT,
    CRON_JOBS,
    HUB,
    METRICS,
    REGISTRY,
    SCHEMAS,
    SETTINGS,
    SSE_PING_S,
    SSE_STREAMS,
    STORE,
)

__all__ = [
    "BROKER",
    "CLIENT",
    "CRON_JOBS",
    "HUB",
    "METRICS",
    "REGISTRY",
    "SCHEMAS",
    "SETTINGS",
    "SSE_PING_S",
    "SSE_STREAMS",
    "STORE",
    "check_bind",
    "create_app",
    "is_loopback",
]

logger = logging.getLogger(__name__)


def create_app(
    settings: Settings, registry: Registry, *, broker: Broker | None = None, cron_jobs: Iterable[Any] = ()
) -> web.Application:
    """The HTTP API and the dashboard.

    ``broker`` is used as given and left open (tests, ``asyncjobs dev``); without it the app
    opens one for ``settings.redis_url`` at start-up and closes it at cleanup. The app starts
    even when Redis is down: requests answer 503 until it is back. ``cron_jobs``: the
    deployment's cron jobs (the settings module's ``CRON_JOBS``), shown on the Cron page.
    """
    metrics = Metrics()
    app = web.Application(
        client_max_size=settings.max_body_bytes,
        middlewares=[
            middlewares.metrics_middleware(metrics.observe),
            middlewares.error_middleware,
            middlewares.cross_site_middleware,
            middlewares.host_middleware(settings.api_token, settings.allowed_hosts),
            middlewares.auth_middleware(settings.api_token),
            middlewares.unsafe_request_middleware,
            middlewares.body_limit_middleware(settings.max_body_bytes),
        ],
    )
    app[SETTINGS] = settings
    app[REGISTRY] = registry
    app[CRON_JOBS] = tuple(cron_jobs)
    app[SCHEMAS] = Schemas(registry)
    app[METRICS] = metrics
    app[SSE_STREAMS] = weakref.WeakSet()
    app[SSE_PING_S] = 10.0
    app.cleanup_ctx.append(_redis_context(broker))
    app.cleanup_ctx.append(sse.streams_context)
    app.on_shutdown.append(_close_streams)
    app.on_response_prepare.append(middlewares.hide_server_version)
    app.add_routes(ROUTES)
    return app


def _redis_context(given: Broker | None):  # type: ignore[no-untyped-def]
    async def redis_context(app: web.Application) -> AsyncIterator[None]:
        s = app[SETTINGS]
        broker = given
        if broker is None:
            broker = create_broker(s.redis_url, durable=s.durable_enqueue, job_expiry=s.job_expiry)
        client = Client(s.redis_url, registry=app[REGISTRY], queues=s.queues, default_queue=s.queues[0], broker=broker)
        await client.open()  # no I/O with a broker given: the app starts even if Redis is down
        app[BROKER], app[CLIENT], app[HUB], app[STORE] = broker, client, client.hub, client.store
        watch = None
        if given is None:
            watch = asyncio.get_running_loop().create_task(watch_redis(broker, s.redis_url), name="asyncjobs-web-redis")
        try:
            yield
        finally:
            if watch is not None:
                watch.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watch
            await client.close()
            if given is None:
                await broker.aclose(close_connection_pool=True)

    return redis_context


async def watch_redis(broker: Broker, url: str, timeout: float = 2.0) -> None:
    """At start-up, check Redis in the background until it answers, as a worker does
    (:func:`~asyncjobs.connections.wait_until_reachable`: the masked URL and the next attempt
    logged, at most 1 s apart; the API answers 503 meanwhile). Requests never wait for this:
    each one reconnects by itself."""

    async def ping() -> None:
        async with asyncio.timeout(timeout):
            await broker.ping()

    await wait_until_reachable(ping, url, note="; the API answers 503 until it is back")
    try:
        await refuse_cluster(broker, url)
    except ConfigError as e:
        logger.error("%s", e)


async def _close_streams(app: web.Application) -> None:
    """End open event streams (the API's and the dashboard's), so shutdown does not wait for
    jobs that never finish."""
    sse.end_streams(app)


def check_bind(host: str, settings: Settings) -> None:
    """Refuse to listen beyond loopback without an API token, unless explicitly allowed."""
    if is_loopback(host) or settings.api_token or settings.allow_public_without_token:
        return
    raise ConfigError(
        f"refusing to listen on {host!r} without an API token: anyone who can reach it could run jobs. "
        "Set ASYNCJOBS_API_TOKEN, listen on 127.0.0.1, or set ASYNCJOBS_ALLOW_PUBLIC_WITHOUT_TOKEN=true",
        key="ASYNCJOBS_API_TOKEN",
    )
