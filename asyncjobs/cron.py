"""Periodic jobs: crontab strings (via croniter) or arq's field form, time-zone aware.

Every worker computes the same tick times and enqueues the tick under the same job id
(``cron:<name>:<tick ms>``); enqueue is unique by id, so each tick runs once however many
workers are running. The ``cron:`` id namespace is the scheduler's: clients cannot enqueue
there (:data:`asyncjobs.keys.RESERVED_ID_PREFIXES`), so no one can take a tick's place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from arq.cron import CronJob
from arq.cron import cron as arq_cron
from croniter import croniter

from asyncjobs.errors import ConfigError
from asyncjobs.keys import CRON_ID_PREFIX
from asyncjobs.registry import JobFunction


@dataclass
class ZonedCronJob(CronJob):
    """An arq ``CronJob`` (field form) whose fields are read in time zone ``tz``, not the worker's."""

    tz: tzinfo | None = None

    def calculate_next(self, prev_run: datetime) -> None:
        if self.tz is not None:
            prev_run = prev_run.astimezone(self.tz) if prev_run.tzinfo else prev_run.replace(tzinfo=self.tz)
        super().calculate_next(prev_run)


@dataclass
class CrontabJob(CronJob):
    """An arq ``CronJob`` whose times come from a crontab expression in a time zone."""

    crontab: str = "* * * * *"
    tz: tzinfo | None = None

    def calculate_next(self, prev_run: datetime) -> None:
        tz = self.tz or prev_run.tzinfo
        start = prev_run.astimezone(tz) if prev_run.tzinfo else prev_run.replace(tzinfo=tz)
        self.next_run = croniter(self.crontab, start).get_next(datetime)


def cron(
    schedule: str | None,
    function: JobFunction[Any, Any],
    *,
    name: str | None = None,
    tz: str | tzinfo | None = "UTC",
    run_at_startup: bool = False,
    keep_result: float = 3600,
    **fields: Any,
) -> CronJob:
    """A periodic job for ``function`` (which must be registered too).

    ``schedule`` is a crontab string (``"*/5 * * * *"``; a sixth field, last, gives seconds); pass
    ``None`` and arq's fields (``minute={0, 30}``, ``hour=...``) for arq's form. The job runs
    with the function's timeout and retries; its result is kept ``keep_result`` seconds, which
    also keeps a late worker from running the same tick again. Its ticks' job ids are
    ``cron:<name>:<tick ms>`` (``name`` defaults to the function's name).
    """
    if not isinstance(function, JobFunction):
        raise ConfigError(f"cron needs a @job function, got {function!r}")
    zone = ZoneInfo(tz) if isinstance(tz, str) else tz
    opts: dict[str, Any] = {
        "name": CRON_ID_PREFIX + (name or function.name).removeprefix(CRON_ID_PREFIX),
        "run_at_startup": run_at_startup,
        "timeout": function.opts.timeout,
        "keep_result": keep_result,
        "max_tries": function.opts.retries + 1,
    }
    if schedule is None:
        base = arq_cron(_placeholder(function), **opts, **fields)
        job: CronJob = ZonedCronJob(**{**base.__dict__, "tz": zone})
    else:
        job = _crontab(schedule, function, opts, zone, fields)
    job.asyncjobs_function = function.name  # type: ignore[attr-defined]
    return job


def _crontab(
    schedule: str, function: JobFunction[Any, Any], opts: dict[str, Any], zone: tzinfo | None, fields: dict[str, Any]
) -> CronJob:
    if fields:
        raise ConfigError(f"cron {opts['name']}: give a crontab string or arq fields, not both")
    if not croniter.is_valid(schedule):
        raise ConfigError(f"cron schedule {schedule!r} is not a crontab expression like '*/5 * * * *'", key="schedule")
    base = arq_cron(_placeholder(function), **opts)
    return CrontabJob(**{**base.__dict__, "crontab": schedule, "tz": zone})


def _placeholder(function: JobFunction[Any, Any]) -> Any:
    # arq checks for a coroutine function here; the runtime swaps in the wrapped one
    return function.func
