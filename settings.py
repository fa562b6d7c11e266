"""Deployment settings: the one place that reads the environment.

``arq settings.WorkerSettings`` and ``asyncjobs worker`` both run :data:`WorkerSettings`.

Environment variables (all optional):

=============================  ============================  =====================================
REDIS_URL                      redis://localhost:6379/0      redis://, rediss://, unix://, redis+sentinel://, memory://
ASYNCJOBS_API_TOKEN            (none)                        bearer token for the HTTP API
ASYNCJOBS_QUEUES               default                       comma-separated, highest priority first
ASYNCJOBS_CONCURRENCY          100                           jobs run at once per worker process
ASYNCJOBS_JOB_TIMEOUT          300                           default seconds per try
ASYNCJOBS_KEEP_RESULT          3600                          seconds results are kept
ASYNCJOBS_LEASE                5                             seconds before a dead worker's job re-runs
ASYNCJOBS_POLL_DELAY           0.5                           fallback poll for jobs enqueued by plain arq
ASYNCJOBS_SHUTDOWN_GRACE       25                            seconds SIGTERM lets running jobs finish
ASYNCJOBS_JOB_EXPIRY           (none)                        seconds a due job may wait before it expires (unset: never)
ASYNCJOBS_MAX_BODY_BYTES       1048576                       HTTP request body limit
ASYNCJOBS_ALLOW_PUBLIC_WITHOUT_TOKEN  false                  allow listening beyond loopback with no token
ASYNCJOBS_ALLOWED_HOSTS        (none)                        extra Host names the HTTP API answers to (loopback always)
ASYNCJOBS_HEADER_TIMEOUT       10                            seconds to send request headers
ASYNCJOBS_BODY_TIMEOUT         30                            seconds to send a request body
ASYNCJOBS_MAX_CONNECTIONS      0 (from the open-file limit)  open HTTP connections at most
ASYNCJOBS_SHOW_TRACEBACK_PATHS  false                        full file paths in job tracebacks
ASYNCJOBS_DURABLE_ENQUEUE      0                             seconds an enqueue waits for a replica (WAIT 1)
ASYNCJOBS_EXAMPLES             false                         register the example jobs (asyncjobs dev always does)
ASYNCJOBS_DATA_DIR             (none)                        the only directory jobs may read files from
ASYNCJOBS_METRICS_PORT         (none)                        worker: serve Prometheus metrics on this port
ASYNCJOBS_SMTP_HOST / _PORT    (none)                        send_email uses SMTP when set
=============================  ============================  =====================================

A ``.env`` file in the working directory is read too (the environment wins over it). Any other
``ASYNCJOBS_*`` variable, in either, is an error (a typo must not be silently ignored).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from arq.cron import CronJob
from dotenv import dotenv_values
from pydantic import AliasGenerator, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from asyncjobs import JobFunction, Registry, Settings, cron, worker_settings
from asyncjobs.config import reject_unknown
from asyncjobs.datafiles import DataDir
from asyncjobs.errors import ConfigError
from asyncjobs.examples import FUNCTIONS as EXAMPLE_FUNCTIONS
from asyncjobs.examples import cleanup

PREFIX = "ASYNCJOBS_"
# Your deployment's job functions and cron jobs: register them here.
JOBS: list[JobFunction[Any, Any]] = []


def your_cron_jobs() -> list[CronJob]:
    """Your cron jobs (built afresh for each WorkerSettings: each binds them to its runtime)."""
    return []


NOT_A = {"int_parsing": "an integer", "float_parsing": "a number", "bool_parsing": "a boolean: use true or false"}


def variable(field: str) -> str:
    """The environment variable behind an :class:`Environment` field."""
    return "REDIS_URL" if field == "redis_url" else PREFIX + field.upper()


class Environment(BaseSettings):
    """The variables, as given (``None``: unset, so :class:`Settings`' default applies). Each
    field ``x`` is read from ``ASYNCJOBS_X`` (exact case), except ``redis_url`` (``REDIS_URL``).
    pydantic-settings reads them from the process environment and a ``.env`` file, the
    environment winning over the file."""

    model_config = SettingsConfigDict(
        alias_generator=AliasGenerator(validation_alias=variable), case_sensitive=True, extra="ignore"
    )

    redis_url: str | None = None
    api_token: str | None = None
    queues: str | None = None
    concurrency: int | None = None
    job_timeout: float | None = None
    keep_result: float | None = None
    lease: float | None = None
    poll_delay: float | None = None
    shutdown_grace: float | None = None
    job_expiry: float | None = None
    max_body_bytes: int | None = None
    allow_public_without_token: bool | None = None
    metrics_port: int | None = None
    durable_enqueue: float | None = None
    allowed_hosts: str | None = None
    header_timeout: float | None = None
    body_timeout: float | None = None
    max_connections: int | None = None
    show_traceback_paths: bool | None = None
    examples: bool | None = None
    data_dir: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_sender: str | None = None


VARIABLES = [variable(n) for n in Environment.model_fields]


def read(env: Mapping[str, str] | None = None, env_file: str | Path | None = None) -> Environment:
    """The variables of the process environment and ``env_file`` (a ``.env`` file, when it
    exists), or of ``env`` alone when given. Unknown ``ASYNCJOBS_*`` names are rejected: a typo
    must not be silently ignored."""
    if env_file is not None and not Path(env_file).is_file():
        env_file = None
    file = dotenv_values(env_file) if env_file else {}
    names = [*(os.environ if env is None else env), *file]
    reject_unknown([n for n in names if n.startswith(PREFIX)], set(VARIABLES) - {"REDIS_URL"}, "setting")
    try:
        if env is None:
            return Environment(_env_file=env_file)
        # every variable given (None: unset), so nothing is read from the process environment
        given: dict[str, Any] = {v: env.get(v, file.get(v)) for v in VARIABLES}
        return Environment(_env_file=None, **given)
    except ValidationError as e:
        err = e.errors()[0]
        name = str(err["loc"][0])
        what = NOT_A.get(err["type"], f"valid ({err['msg']})")
        raise ConfigError(f"{name} {str(err['input'])[:80]!r} is not {what}", key=name) from None


def load(env: Mapping[str, str] | None = None, env_file: str | Path | None = None) -> Settings:
    """Settings from the environment (or ``env``) and a ``.env`` file; unknown names are rejected."""
    return settings_from(read(env, env_file))


def settings_from(e: Environment) -> Settings:
    values = {name: value for name in Settings.field_names() if (value := getattr(e, name)) is not None}
    if not e.redis_url:  # unset or empty: the default
        values.pop("redis_url", None)
    for name in ("queues", "allowed_hosts"):  # comma-separated lists
        if (raw := getattr(e, name)) is not None:
            values[name] = tuple(item.strip() for item in raw.split(",") if item.strip())
    try:
        return Settings(**values)
    except ConfigError as err:  # name the variable the user set, not the field behind it
        if err.key in values:
            raise ConfigError(f"{variable(err.key)}: {err}", key=variable(err.key)) from None
        raise


ENV = read(env_file=".env")  # a .env file in the working directory; the environment wins
SETTINGS = settings_from(ENV)
# `asyncjobs dev` runs on the embedded in-memory broker unless REDIS_URL is set
DEV_REDIS_URL = ENV.redis_url or "memory://"
# the example jobs are a demo: a deployment serves them only when asked to
EXAMPLES = bool(ENV.examples)
DATA_DIR = DataDir(ENV.data_dir) if ENV.data_dir else None
SMTP = (
    {"host": ENV.smtp_host, "port": ENV.smtp_port or 25, "sender": ENV.smtp_sender or "asyncjobs@localhost"}
    if ENV.smtp_host
    else None
)


async def startup(ctx: dict[str, Any]) -> None:
    """Resources shared by every job in a worker process."""
    ctx["smtp"] = SMTP
    ctx["data_dir"] = DATA_DIR


def build(examples: bool) -> tuple[Registry, list[CronJob], type]:
    """The registry, cron jobs and ``WorkerSettings`` of this deployment, with or without the
    example jobs."""
    registry = Registry([*JOBS, *(EXAMPLE_FUNCTIONS if examples else [])])
    cron_jobs = [*your_cron_jobs(), *([cron("*/5 * * * *", cleanup, tz="UTC")] if examples else [])]
    return registry, cron_jobs, worker_settings(registry, settings=SETTINGS, cron_jobs=cron_jobs, on_startup=startup)


REGISTRY, CRON_JOBS, WorkerSettings = build(EXAMPLES)


def dev_mode() -> None:
    """``asyncjobs dev`` calls this before reading the names above: the demo serves the example jobs."""
    global REGISTRY, CRON_JOBS, WorkerSettings
    if not EXAMPLES:
        REGISTRY, CRON_JOBS, WorkerSettings = build(True)
