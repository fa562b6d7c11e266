"""Starting workers from the command line: settings loading and the Redis connection with
retries (``--processes N`` supervision is :mod:`asyncjobs.supervisor`)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

from arq.utils import import_string

from asyncjobs.cluster import check_tagged, is_cluster
from asyncjobs.config import redis_location, settings_kwargs
from asyncjobs.connections import Broker, create_broker, refuse_cluster, wait_until_reachable
from asyncjobs.errors import ConfigError
from asyncjobs.worker import Worker

logger = logging.getLogger(__name__)
ASYNCJOBS_ONLY = ("redis_url", "registry", "runtime", "metrics_port")


def load_settings(path: str) -> Any:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return import_string(path)
    except ImportError as e:
        raise ConfigError(f"cannot load worker settings {path!r}: {e}") from e


async def connect_with_retry(
    url: str, queue_key_name: str, *, attempts: int | None = None, job_expiry: float | None = None
) -> Broker:
    """Wait until Redis answers (:func:`~asyncjobs.connections.wait_until_reachable`), then
    return a broker that re-establishes a lost connection for ever (jobs it enqueues, cron
    ticks, expire ``job_expiry`` seconds after they are due; ``None``: never)."""

    async def ping() -> None:
        probe = create_broker(url)
        try:
            await probe.ping()
            await refuse_cluster(probe, url)
        finally:
            await probe.aclose(close_connection_pool=True)

    await wait_until_reachable(ping, url, attempts=attempts)
    # from now on a lost connection (a Redis restart) is re-established, never fatal
    return create_broker(url, reconnect_for=None, job_expiry=job_expiry)


def build_worker(settings_cls: Any, overrides: dict[str, Any], pool: Broker) -> Worker:
    kwargs = settings_kwargs(settings_cls)
    for k in ASYNCJOBS_ONLY:
        kwargs.pop(k, None)
    kwargs.pop("redis_settings", None)
    kwargs.update(overrides)
    worker = Worker(redis_pool=pool, **kwargs)
    if is_cluster(pool):  # said before the worker starts, not from inside its loop
        check_tagged(worker.queue_names)
    return worker


def run_worker(path: str, overrides: dict[str, Any]) -> None:
    settings_cls = load_settings(path)
    url = getattr(settings_cls, "redis_url", None)
    if url is None:
        raise ConfigError(f"{path} has no redis_url: build it with asyncjobs.worker_settings()")
    kwargs = settings_kwargs(settings_cls)  # reject typos now, not after Redis answers
    if not kwargs.get("functions") and not kwargs.get("cron_jobs"):
        raise ConfigError(
            f"{path} registers no job functions or cron jobs: add yours (settings.py: JOBS), "
            "or set ASYNCJOBS_EXAMPLES=1 to serve the example jobs"
        )
    metrics_port = overrides.pop("metrics_port", None)
    if metrics_port is not None:
        if getattr(settings_cls, "runtime", None) is None:
            raise ConfigError(f"{path} has no runtime for --metrics-port: build it with asyncjobs.worker_settings()")
        settings_cls.runtime.metrics_port = metrics_port
    logger.info("worker starting for Redis at %s", redis_location(url))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    expiry_ms = getattr(settings_cls, "expires_extra_ms", None)
    pool = loop.run_until_complete(connect_with_retry(url, "", job_expiry=expiry_ms / 1000 if expiry_ms else None))
    worker = build_worker(settings_cls, overrides, pool)
    worker.run()
