"""Deployment settings: the one place that reads the environment.

``arq settings.WorkerSettings`` and ``asyncjobs worker`` both run :data:`WorkerSettings`.

Environment variables (all optional):

=============================  ============================  =====================================
REDIS_URL                      redis://localhost:6379/0      redis://, rediss://, unix://, memory://
ASYNCJOBS_API_TOKEN            (none)                        bearer token for the HTTP API
ASYNCJOBS_QUEUES               default                       comma-separated, highest priority first
ASYNCJOBS_CONCURRENCY          100                           jobs run at once per worker process
ASYNCJOBS_JOB_TIMEOUT          300                           default seconds per try
ASYNCJOBS_KEEP_RESULT          3600                          seconds results are kept
ASYNCJOBS_LEASE                5                             seconds before a dead worker's job re-runs
ASYNCJOBS_POLL_DELAY           0.5                           fallback poll for jobs enqueued by plain arq
ASYNCJOBS_SHUTDOWN_GRACE       25                            seconds SIGTERM lets running jobs finish
ASYNCJOBS_JOB_EXPIRY           86400                         seconds a due job may wait before it expires
ASYNCJOBS_MAX_BODY_BYTES       1048576                       HTTP request body limit
ASYNCJOBS_ALLOW_PUBLIC_WITHOUT_TOKEN  false                  allow listening beyond loopback with no token
ASYNCJOBS_ALLOWED_HOSTS        (loopback only)               extra Host names the HTTP API answers to
ASYNCJOBS_HEADER_TIMEOUT       10                            seconds to send request headers
ASYNCJOBS_BODY_TIMEOUT         30                            seconds to send a request body
ASYNCJOBS_MAX_CONNECTIONS      0 (from the open-file limit)  open HTTP connections at most
ASYNCJOBS_SHOW_TRACEBACK_PATHS  false                        full file paths in job tracebacks
ASYNCJOBS_SMTP_HOST / _PORT    (none)                        send_email uses SMTP when set
=============================  ============================  =====================================

Any other ``ASYNCJOBS_*`` variable is an error (a typo must not be silently ignored).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from asyncjobs import Registry, Settings, cron, worker_settings
from asyncjobs.config import reject_unknown
from asyncjobs.errors import ConfigError
from asyncjobs.examples import FUNCTIONS, cleanup

PREFIX = "ASYNCJOBS_"
EXTRA = {"SMTP_HOST", "SMTP_PORT", "SMTP_SENDER"}


def _cast(name: str, raw: str, kind: type) -> Any:
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off", ""):
            return False
        raise ConfigError(f"{PREFIX}{name} {raw!r} is not a boolean: use true or false", key=PREFIX + name)
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{PREFIX}{name} {raw!r} is not a {kind.__name__}", key=PREFIX + name) from None


def load(env: Mapping[str, str]) -> Settings:
    """Settings from an environment mapping; unknown ``ASYNCJOBS_*`` names are rejected."""
    names = {n.upper(): n for n in Settings.field_names() if n != "redis_url"}
    given = [k for k in env if k.startswith(PREFIX)]
    reject_unknown(given, {PREFIX + n for n in set(names) | EXTRA}, "setting")
    kinds = {
        "api_token": str,
        "concurrency": int,
        "job_timeout": float,
        "keep_result": float,
        "lease": float,
        "poll_delay": float,
        "shutdown_grace": float,
        "job_expiry": float,
        "max_body_bytes": int,
        "allow_public_without_token": bool,
        "header_timeout": float,
        "body_timeout": float,
        "max_connections": int,
        "show_traceback_paths": bool,
    }
    values: dict[str, Any] = {"redis_url": env.get("REDIS_URL") or "redis://localhost:6379/0"}
    for upper, name in names.items():
        raw = env.get(PREFIX + upper)
        if raw is None:
            continue
        if name in ("queues", "allowed_hosts"):
            values[name] = tuple(q.strip() for q in raw.split(",") if q.strip())
        else:
            values[name] = _cast(upper, raw, kinds[name])
    try:
        return Settings(**values)
    except ConfigError as e:  # name the variable the user set, not the field behind it
        if e.key in names.values():
            raise ConfigError(f"{PREFIX}{e.key.upper()}: {e}", key=PREFIX + e.key.upper()) from None
        raise


SETTINGS = load(os.environ)
# `asyncjobs dev` runs on the embedded in-memory broker unless REDIS_URL is set
DEV_REDIS_URL = os.environ.get("REDIS_URL") or "memory://"
REGISTRY = Registry(FUNCTIONS)
SMTP = (
    {
        "host": os.environ[PREFIX + "SMTP_HOST"],
        "port": int(os.environ.get(PREFIX + "SMTP_PORT", "25")),
        "sender": os.environ.get(PREFIX + "SMTP_SENDER", "asyncjobs@localhost"),
    }
    if os.environ.get(PREFIX + "SMTP_HOST")
    else None
)


async def startup(ctx: dict[str, Any]) -> None:
    """Resources shared by every job in a worker process."""
    ctx["smtp"] = SMTP


CRON_JOBS = [cron("*/5 * * * *", cleanup, tz="UTC")]

WorkerSettings = worker_settings(REGISTRY, settings=SETTINGS, cron_jobs=CRON_JOBS, on_startup=startup)
