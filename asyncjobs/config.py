"""Typed configuration and the arq ``WorkerSettings`` builder.

Library code never reads the environment: ``settings.py`` does, and hands values here.
Unknown options are rejected with a suggestion, never dropped.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, cast

from arq.connections import RedisSettings
from arq.cron import CronJob
from arq.worker import Worker as ArqWorker
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asyncjobs import keys, redis_url
from asyncjobs.connections import Reconnect, mask_url, validate_url
from asyncjobs.errors import ConfigError
from asyncjobs.registry import JobFunction, Registry
from asyncjobs.runtime import Hook, Runtime
from asyncjobs.serialization import deserialize, serialize

ARQ_OPTIONS = frozenset(inspect.signature(ArqWorker.__init__).parameters) - {"self", "functions"}
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
ASYNCJOBS_OPTIONS = frozenset({"queues", "lease", "redis_url", "registry", "runtime", "metrics_port"})


def reject_unknown(given: Iterable[str], known: Iterable[str], what: str) -> None:
    known = sorted(known)
    for name in given:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known: {', '.join(known)}"
            raise ConfigError(f"unknown {what} {name!r}{hint}", key=name)


@dataclass(frozen=True)
class Settings:
    """Deployment settings, built by ``settings.py`` from the environment."""

    redis_url: str = DEFAULT_REDIS_URL
    api_token: str | None = None
    queues: tuple[str, ...] = (keys.DEFAULT_QUEUE,)
    concurrency: int = 100
    job_timeout: float = 300.0
    keep_result: float = 3600.0
    lease: float = 5.0
    poll_delay: float = 0.5
    #: seconds SIGTERM waits for running jobs before cancelling and re-queueing them (0: at once)
    shutdown_grace: float = 25.0
    #: seconds a queued job may wait past its run-at time before its payload expires; an expired
    #: job is logged and dead-lettered when a worker reaches it. None (the default): a queued job
    #: waits for a worker however long that takes (arq's own enqueue expires it after a day)
    job_expiry: float | None = None
    max_body_bytes: int = 1024 * 1024
    allow_public_without_token: bool = False
    #: a worker serves Prometheus metrics on this port (all interfaces) when set
    metrics_port: int | None = None
    #: seconds an enqueue waits for a Redis replica to confirm it (0: it does not wait)
    durable_enqueue: float = 0.0
    #: extra ``Host`` names the HTTP API answers to (loopback names always pass); without an
    #: API token only these and loopback are served, which defeats DNS rebinding; ``*``: any
    allowed_hosts: tuple[str, ...] = ()
    #: seconds a client gets to send a request's headers (and an idle keep-alive connection lives)
    header_timeout: float = 10.0
    #: seconds a client gets to send a request body
    body_timeout: float = 30.0
    #: open HTTP connections at most (0: from the open-file limit); more are answered 503 and closed
    max_connections: int = 0
    #: show job tracebacks with the worker's absolute file paths (default: relative paths)
    show_traceback_paths: bool = False

    def __post_init__(self) -> None:
        validate_url(self.redis_url)
        if not self.queues:
            raise ConfigError(
                "ASYNCJOBS_QUEUES is empty: name at least one queue, e.g. 'default'", key="ASYNCJOBS_QUEUES"
            )
        for name in ("concurrency", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}", key=name)
        if self.durable_enqueue < 0:
            raise ConfigError(
                f"durable_enqueue must be >= 0 seconds, got {self.durable_enqueue}", key="durable_enqueue"
            )
        if self.shutdown_grace < 0:
            raise ConfigError(f"shutdown_grace must be >= 0 seconds, got {self.shutdown_grace}", key="shutdown_grace")
        if self.metrics_port is not None and not 0 < self.metrics_port < 65536:
            raise ConfigError(f"metrics_port must be a TCP port (1-65535), got {self.metrics_port}", key="metrics_port")
        if self.max_connections < 0:
            raise ConfigError(
                f"max_connections must be >= 0 (0: automatic), got {self.max_connections}", key="max_connections"
            )
        for name in ("job_timeout", "lease", "poll_delay", "job_expiry", "header_timeout", "body_timeout"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be > 0 seconds, got {getattr(self, name)}", key=name)

    @property
    def memory(self) -> bool:
        return self.redis_url.startswith("memory://")

    @classmethod
    def field_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]


def redis_location(url: str) -> str:
    """``url`` for a start-up log line: masked, and the default said plainly."""
    if url == DEFAULT_REDIS_URL:
        return f"{url} (the default URL: set REDIS_URL to use another Redis)"
    return mask_url(url)


def redis_settings(url: str) -> RedisSettings | None:
    """arq's ``RedisSettings`` for ``url`` (``None`` for the in-memory broker)."""
    target = redis_url.parse(url)
    if target.scheme == "memory":
        return None
    rs = redis_url.arq_settings(target)
    # a plain arq worker rides out a Redis restart too (reconnecting with backoff, for ever)
    rs.retry = Reconnect(url, -1)
    # arq < 0.28 hints this as a list of exception instances; a cast holds on every version
    rs.retry_on_error = cast(Any, [RedisConnectionError, RedisTimeoutError])
    return rs


def worker_settings(
    functions: Registry | Sequence[JobFunction[Any, Any]],
    *,
    settings: Settings | None = None,
    cron_jobs: Sequence[CronJob] = (),
    on_startup: Hook | None = None,
    on_shutdown: Hook | None = None,
    **options: Any,
) -> type:
    """An arq-compatible ``WorkerSettings`` class: ``arq settings.WorkerSettings`` and
    ``asyncjobs worker settings.WorkerSettings`` both run it with asyncjobs' runtime.

    ``options`` are extra arq ``Worker`` options (e.g. ``job_completion_wait``); unknown ones
    raise :class:`ConfigError`.
    """
    reject_unknown(options, ARQ_OPTIONS, "worker option")
    s = settings or Settings()
    registry = functions if isinstance(functions, Registry) else Registry(functions)
    runtime = Runtime(
        registry,
        default_queue=s.queues[0],
        default_timeout=s.job_timeout,
        on_startup=on_startup,
        on_shutdown=on_shutdown,
        after_job_end=options.pop("after_job_end", None),  # runs after the runtime's own
        metrics_port=s.metrics_port,
        redis_url=s.redis_url,
    )
    arq_functions = runtime.arq_functions()
    wrapped = {f.name: f.coroutine for f in arq_functions}
    crons = [_bind_cron(cj, wrapped) for cj in cron_jobs]
    attrs: dict[str, Any] = {
        "functions": arq_functions,
        "cron_jobs": crons,
        "redis_settings": redis_settings(s.redis_url),
        "queue_name": keys.queue(s.queues[0]),
        "on_startup": runtime.on_startup,
        "on_shutdown": runtime.on_shutdown,
        "after_job_end": runtime.after_job_end,
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "allow_abort_jobs": True,
        "max_jobs": s.concurrency,
        "job_timeout": s.job_timeout,
        "keep_result": s.keep_result,
        "poll_delay": s.poll_delay,
        "max_tries": 1,
        "job_completion_wait": s.shutdown_grace,
        # plain arq's enqueues (its cron) keep arq's one-day expiry unless one is set
        **({"expires_extra_ms": int(s.job_expiry * 1000)} if s.job_expiry is not None else {}),
        # asyncjobs-only (arq ignores them)
        "queues": list(s.queues),
        "lease": s.lease,
        "redis_url": s.redis_url,
        "registry": registry,
        "runtime": runtime,
        "metrics_port": s.metrics_port,
        **options,
    }
    attrs["__doc__"] = "arq-compatible worker settings built by asyncjobs.worker_settings()."
    return type("WorkerSettings", (), attrs)


def _bind_cron(cj: CronJob, wrapped: Mapping[str, Any]) -> CronJob:
    target = getattr(cj, "asyncjobs_function", cj.name.removeprefix(keys.CRON_ID_PREFIX))
    if target in wrapped:
        cj.coroutine = wrapped[target]
        # its ticks' ids (``<name>:<tick ms>``) must be in the namespace clients cannot enqueue in
        cj.name = keys.CRON_ID_PREFIX + cj.name.removeprefix(keys.CRON_ID_PREFIX)
        return cj
    raise ConfigError(f"cron job {cj.name!r}: register its function {target!r} in the worker's functions too")


def settings_kwargs(settings_cls: Any) -> dict[str, Any]:
    """Keyword arguments for :class:`asyncjobs.Worker` from a ``WorkerSettings`` class or dict,
    rejecting attributes that no worker knows (arq would drop them silently)."""
    d = (
        settings_cls
        if isinstance(settings_cls, dict)
        else {k: v for k, v in vars(settings_cls).items() if not k.startswith("_")}
    )
    reject_unknown(d, ARQ_OPTIONS | ASYNCJOBS_OPTIONS | {"functions"}, "WorkerSettings attribute")
    return dict(d)
