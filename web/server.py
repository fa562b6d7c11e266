"""Running the app: ``asyncjobs web`` (API only) and ``asyncjobs dev`` (API + an in-process
worker, on the embedded in-memory broker unless ``REDIS_URL`` is set)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.web_runner import GracefulExit

from asyncjobs.config import Settings, redis_location
from asyncjobs.connections import create_broker
from asyncjobs.registry import Registry
from web.app import check_bind, create_app
from web.serving import serve

logger = logging.getLogger(__name__)

MEMORY_NOTE = """
  ************************************************************************
  *  asyncjobs dev: using the EMBEDDED IN-MEMORY broker (memory://).     *
  *  NOTHING PERSISTS: every job and result is lost when this process    *
  *  exits, and only this process can see them.                          *
  *  Set REDIS_URL=redis://host:6379/0 to use a real Redis.              *
  ************************************************************************
"""


def run_web(settings: Settings, registry: Registry, host: str, port: int) -> None:
    """Serve the API until SIGINT/SIGTERM."""
    check_bind(host, settings)
    app = create_app(settings, registry)
    logger.info("serving the API for Redis at %s", redis_location(settings.redis_url))
    serve(app, host, port, settings, _printer(host, port))


def run_dev(settings: Settings, registry: Registry, worker_settings: Any, redis_url: str, host: str, port: int) -> None:
    """Serve the API and run a worker in one process, sharing one broker."""
    settings = dataclasses.replace(settings, redis_url=redis_url)
    check_bind(host, settings)
    broker = create_broker(redis_url)  # memory:// without its extra fails here, before the note
    if settings.memory:
        print(MEMORY_NOTE, file=sys.stderr, flush=True)
    app = create_app(settings, registry, broker=broker)
    app.on_startup.append(_say_why_it_stops)
    app.cleanup_ctx.append(_worker_context(worker_settings, redis_url))
    app.on_cleanup.append(lambda _: broker.aclose(close_connection_pool=True))
    serve(app, host, port, settings, _printer(host, port))


def _worker_context(worker_settings: Any, redis_url: str) -> Any:
    async def worker_context(app: web.Application) -> AsyncIterator[None]:
        import asyncio
        import contextlib

        from asyncjobs.runner import build_worker, connect_with_retry

        worker = None

        async def run() -> None:
            nonlocal worker
            # Redis may be down at start: wait for it (logging the URL and the next attempt)
            # instead of letting the in-process worker die while the API keeps answering
            pool = await connect_with_retry(redis_url, "")
            worker = build_worker(worker_settings, {"handle_signals": False}, pool)
            await worker.async_run()

        task = asyncio.get_running_loop().create_task(run(), name="asyncjobs-dev-worker")
        task.add_done_callback(_report_worker_exit)
        try:
            yield
        finally:
            task.remove_done_callback(_report_worker_exit)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            if worker is not None:
                arq_log = logging.getLogger("arq.worker")
                arq_log.addFilter(_hide_close_signal)  # the stop was already logged with its cause
                try:
                    with contextlib.suppress(Exception):  # Redis may be gone by now; nothing left to save
                        await worker.close()
                finally:
                    arq_log.removeFilter(_hide_close_signal)

    return worker_context


async def _say_why_it_stops(app: web.Application) -> None:
    """Log the signal that stops ``asyncjobs dev`` (Ctrl-C: "interrupted"), then stop as
    aiohttp would; otherwise the only trace is the in-process worker's internal close signal."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, _stop, sig)


def _stop(sig: signal.Signals) -> None:
    why = "interrupted (Ctrl-C)" if sig == signal.SIGINT else f"stopped by {sig.name}"
    logger.info("asyncjobs dev %s: stopping the API and the worker (running jobs are re-queued)", why)
    raise GracefulExit()


def _hide_close_signal(record: logging.LogRecord) -> bool:
    """Drop arq's "shutdown on SIGUSR1" line: SIGUSR1 is how ``Worker.close()`` stops it, not a
    signal anyone sent."""
    args = record.args if isinstance(record.args, tuple) else ()
    return not (str(record.msg).startswith("shutdown on") and args[:1] == ("SIGUSR1",))


def _report_worker_exit(task: Any) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the in-process worker stopped: %s", task.exception(), exc_info=task.exception())


def _printer(host: str, port: int) -> Any:
    def show() -> None:
        shown = f"[{host}]" if ":" in host else host
        print(f"asyncjobs: listening on http://{shown}:{port} (API: /api/openapi.json)", flush=True)

    return show
