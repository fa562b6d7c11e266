"""Starting workers from the command line: settings loading, Redis connection with retries,
and ``--processes N`` supervision (a dead child is restarted)."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from typing import Any

from arq.utils import import_string
from redis.exceptions import RedisError

from asyncjobs.config import redis_location, settings_kwargs
from asyncjobs.connections import Broker, create_broker, mask_url
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


async def connect_with_retry(url: str, queue_key_name: str, *, attempts: int | None = None) -> Broker:
    """Connect, retrying with backoff (logging the URL and the next attempt) until Redis answers."""
    delay, n = 0.5, 0
    while True:
        broker = create_broker(url)
        try:
            await broker.ping()
            if n:
                logger.info("connected to Redis at %s", mask_url(url))
            await broker.aclose(close_connection_pool=True)
            # from now on a lost connection (a Redis restart) is re-established, never fatal
            return create_broker(url, reconnect_for=None)
        except (RedisError, OSError) as e:
            await broker.aclose(close_connection_pool=True)
            n += 1
            if attempts is not None and n >= attempts:
                from asyncjobs.errors import BrokerUnavailable

                raise BrokerUnavailable(mask_url(url), str(e)) from e
            logger.warning("cannot reach Redis at %s (%s); next attempt in %.1fs", mask_url(url), e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


def build_worker(settings_cls: Any, overrides: dict[str, Any], pool: Broker) -> Worker:
    kwargs = settings_kwargs(settings_cls)
    for k in ASYNCJOBS_ONLY:
        kwargs.pop(k, None)
    kwargs.pop("redis_settings", None)
    kwargs.update(overrides)
    return Worker(redis_pool=pool, **kwargs)


def run_worker(path: str, overrides: dict[str, Any]) -> None:
    settings_cls = load_settings(path)
    url = getattr(settings_cls, "redis_url", None)
    if url is None:
        raise ConfigError(f"{path} has no redis_url: build it with asyncjobs.worker_settings()")
    settings_kwargs(settings_cls)  # reject typos now, not after Redis answers
    metrics_port = overrides.pop("metrics_port", None)
    if metrics_port is not None:
        if getattr(settings_cls, "runtime", None) is None:
            raise ConfigError(f"{path} has no runtime for --metrics-port: build it with asyncjobs.worker_settings()")
        settings_cls.runtime.metrics_port = metrics_port
    logger.info("worker starting for Redis at %s", redis_location(url))
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pool = loop.run_until_complete(connect_with_retry(url, ""))
    worker = build_worker(settings_cls, overrides, pool)
    worker.run()


def supervise(processes: int, argv: list[str]) -> int:
    """Run ``processes`` copies of this command with ``--processes 1``; restart any that dies;
    forward SIGTERM/SIGINT and wait for them to drain."""
    child_argv = [sys.executable, "-m", "asyncjobs", *_strip_processes(argv[1:]), "--processes", "1"]
    children: list[subprocess.Popen[bytes]] = []
    stopping = False

    def stop(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for c in children:
            if c.poll() is None:
                c.send_signal(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    children = [subprocess.Popen(child_argv) for _ in range(processes)]
    while not stopping:
        for i, c in enumerate(children):
            if c.poll() is not None and not stopping:
                logger.warning("worker process %d exited with %s; restarting", c.pid, c.returncode)
                children[i] = subprocess.Popen(child_argv)
        time.sleep(0.5)
    return max((c.wait() for c in children), default=0)


def _strip_processes(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a == "--processes":
            skip = True
            continue
        if a.startswith("--processes="):
            continue
        out.append(a)
    return out
