"""Lease renewal from a thread of its own, and a watchdog for a blocked event loop.

A job that blocks the event loop (``time.sleep`` or CPU work inside ``async def``) must not
stop its worker's leases from being renewed, or another worker takes the job while it still
runs. So the leases of a worker's running jobs are renewed by a thread with its own
synchronous Redis connection: one ``scripts.RENEW`` call per tick for all of them. A job stays
in the renewed set until its finish is written (a finish held up by a Redis outage keeps its
lease), and RENEW only extends a marker that still exists and holds this worker's id, so a
renewal racing with a finish never brings a finished job's lease back.

The same thread watches the event loop: if the loop has not run a callback for
``BLOCKED_WARN_S`` seconds it logs a warning naming the job whose code is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.sentinel
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.exceptions import RedisError

from asyncjobs import cluster as connections_cluster
from asyncjobs import keys, memory, scripts
from asyncjobs.backoff import Fixed, Retrying

logger = logging.getLogger(__name__)

BLOCKED_WARN_S = 1.0  # an event loop stalled this long is reported, naming the blocking job
WATCH_TICK_S = 0.25  # how often the thread looks at the event loop

# keyword arguments of an asyncio connection that a synchronous one does not take (or takes
# as a different type)
_ASYNC_ONLY = ("retry", "retry_on_error", "parser_class", "redis_connect_func", "connection_class", "connection_pool")


def sync_client(pool: Any, socket_timeout: float) -> Any:
    """A synchronous Redis client to the server ``pool`` (a redis.asyncio client) talks to."""
    if hasattr(pool, "get_nodes"):  # a Redis Cluster client (cluster mode)
        return connections_cluster.sync_client(pool, socket_timeout)
    cp = pool.connection_pool
    kwargs = dict(cp.connection_kwargs)
    kind = cp.connection_class.__name__
    if "server" in kwargs and kind.startswith("Fake"):  # the embedded memory:// broker
        return memory.sync_client(kwargs["server"])
    for k in _ASYNC_ONLY:
        kwargs.pop(k, None)
    kwargs["socket_timeout"] = socket_timeout
    kwargs.setdefault("socket_connect_timeout", socket_timeout)
    if isinstance(cp, SentinelConnectionPool):  # ask the sentinels too: follow a failover
        manager = cp.sentinel_manager
        sentinels = [s.connection_pool.connection_kwargs for s in manager.sentinels]
        sentinel = redis.sentinel.Sentinel(  # type: ignore[no-untyped-call]
            [(s["host"], s["port"]) for s in sentinels], sentinel_kwargs=manager.sentinel_kwargs, ssl="SSL" in kind
        )
        return sentinel.master_for(cp.service_name, **kwargs)  # type: ignore[no-untyped-call]
    cls = {"SSLConnection": redis.SSLConnection, "UnixDomainSocketConnection": redis.UnixDomainSocketConnection}
    conn_class = cls.get(kind, redis.Connection)
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=conn_class, **kwargs))


def close_sync(client: Any) -> None:
    """Close a client from :func:`sync_client`, with its connections to the sentinels if any."""
    client.close()
    manager = getattr(getattr(client, "connection_pool", None), "sentinel_manager", None)
    for sentinel in manager.sentinels if manager is not None else ():
        sentinel.close()


class LeaseKeeper:
    """Renews the leases of the jobs a worker runs, every ``lease / 3`` s, from a thread."""

    def __init__(self, lease_s: float) -> None:
        self.lease_ms = int(lease_s * 1000)
        self.interval = max(0.2, lease_s / 3)
        self._jobs: dict[str, tuple[str, asyncio.Task[Any] | None]] = {}  # id -> (queue key, task)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        self._renew: Any = None
        self.owner = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._beat_at = time.monotonic()
        self._stalled = False
        self._stall_from = 0.0

    # --- the event loop's side ------------------------------------------------------------
    def add(self, job_id: str, queue_key: str, task: asyncio.Task[Any] | None = None) -> None:
        """Renew ``job_id``'s lease until :meth:`discard`."""
        with self._lock:
            self._jobs[job_id] = (queue_key, task)

    def discard(self, job_id: str, task: asyncio.Task[Any] | None = None) -> None:
        """Stop renewing ``job_id`` (with ``task``: only if that task's run is the one renewed,
        so a later run of the same id, already taken again, keeps its lease)."""
        with self._lock:
            entry = self._jobs.get(job_id)
            if entry is not None and (task is None or entry[1] is task):
                del self._jobs[job_id]

    def releaser(self, job_id: str) -> Callable[[], None]:
        """A callable that stops renewing ``job_id``'s current run, to call once its finish is
        written; a later run of the same id (a retry taken again meanwhile) is left renewed."""
        with self._lock:
            entry = self._jobs.get(job_id)

        def release() -> None:
            with self._lock:
                if self._jobs.get(job_id) is entry:
                    self._jobs.pop(job_id, None)

        return release

    def start(self, pool: Any, owner: str) -> None:
        """Start the thread; ``owner`` is the value this worker's in-progress markers hold."""
        self.owner = owner
        self._loop = asyncio.get_running_loop()
        self._client = sync_client(pool, socket_timeout=max(1.0, self.interval))
        self._renew = self._client.register_script(scripts.RENEW)
        self._beat_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"asyncjobs-leases-{owner}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread (at once, or after a Redis call under way) and close its connection."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("lease renewal thread did not stop within %gs", timeout)
            self._thread = None
        if self._client is not None:
            with contextlib.suppress(RedisError, OSError):
                close_sync(self._client)
            self._client = None

    def _beat(self) -> None:
        self._beat_at = time.monotonic()

    # --- the thread's side ----------------------------------------------------------------
    def _run(self) -> None:
        message = "lease renewal: Redis unavailable ({reason}); will retry in {delay:.1f}s"
        retrying = Retrying(logger, message, policy=Fixed(self.interval))
        next_renewal = time.monotonic() + self.interval
        while not self._stop.wait(min(WATCH_TICK_S, self.interval)):
            self._watch()
            if time.monotonic() >= next_renewal:
                next_renewal = time.monotonic() + self.interval
                try:
                    self.renew()
                except (RedisError, OSError) as e:
                    retrying.failed(e)  # logs; the next renewal is due in one interval anyway
                else:
                    retrying.succeeded()

    def renew(self) -> int:
        """Extend the lease of every running job in one call; the number renewed."""
        with self._lock:
            jobs = [(job_id, queue_key) for job_id, (queue_key, _) in self._jobs.items()]
        if not jobs:
            return 0
        at = int(time.time() * 1000) + self.lease_ms
        by_tag: dict[str, list[tuple[str, str]]] = {}  # one call per hash tag (asyncjobs.keys)
        for job in jobs:
            by_tag.setdefault(keys.tag_of(job[0]), []).append(job)
        renewed = 0
        for group in by_tag.values():
            argv: list[Any] = [at, self.owner]
            for job_id, queue_key in group:
                argv += [queue_key, job_id]
            renewed += int(self._renew(keys=[keys.in_progress(job_id) for job_id, _ in group], args=argv))
        return renewed

    def _watch(self) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        stalled = time.monotonic() - self._beat_at
        if stalled > BLOCKED_WARN_S and not self._stalled:
            self._stalled, self._stall_from = True, self._beat_at
            logger.warning(
                "event loop blocked for %.1fs by job %s (running: %s): blocking code in an async job "
                "delays every job of this worker; use @job(executor='thread') or 'process' for it",
                stalled,
                self._blocking_job(loop) or "<none: not in a job>",
                ", ".join(self._running_ids()) or "none",
            )
        elif stalled <= BLOCKED_WARN_S and self._stalled:
            self._stalled = False
            logger.warning("event loop ran again after %.1fs blocked", self._beat_at - self._stall_from)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._beat)

    def _running_ids(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def _blocking_job(self, loop: asyncio.AbstractEventLoop) -> str | None:
        current = asyncio.current_task(loop)
        with self._lock:
            return next((job_id for job_id, (_, task) in self._jobs.items() if task is current and task), None)
