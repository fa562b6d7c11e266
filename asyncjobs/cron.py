"""Periodic jobs: crontab strings (via croniter) or arq's field form, time-zone aware.

Every worker computes the same tick times and enqueues the tick under the same job id
(``cron:<name>:<tick ms>``); enqueue is unique by id, so each tick runs once however many
workers are running. The ``cron:`` id namespace is the scheduler's: clients cannot enqueue
there (:data:`asyncjobs.keys.RESERVED_ID_PREFIXES`), so no one can take a tick's place.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from arq.cron import CronJob
from arq.cron import cron as arq_cron
from croniter import croniter

from asyncjobs import keys
from asyncjobs.connections import job_id_for
from asyncjobs.errors import ConfigError
from asyncjobs.keys import CRON_ID_PREFIX
from asyncjobs.registry import JobFunction

if TYPE_CHECKING:
    from asyncjobs.client import Client


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


async def cron_table(client: Client, cron_jobs: Iterable[Any], *, upcoming: int = 3) -> list[dict[str, Any]]:
    """Every periodic job with its schedule, time zone, next run (and the ``upcoming`` next
    runs) and last run (the job of the previous tick, found by its deterministic id
    ``<name>:<tick ms>``). The dashboard's Cron page and ``asyncjobs cron`` show this."""
    now = datetime.now(UTC)
    rows = []
    for cj in cron_jobs:
        schedule, tz = getattr(cj, "crontab", None), getattr(cj, "tz", None)
        row: dict[str, Any] = {
            "name": cj.name,
            "function": getattr(cj, "asyncjobs_function", cj.name),
            "tz": str(tz) if tz else "UTC",
            "next_run_ms": None,
            "next_runs_ms": [],
            "last": None,
        }
        if schedule is not None:
            it = croniter(schedule, now.astimezone(tz) if tz else now)
            row["next_runs_ms"] = [int(it.get_next(datetime).timestamp() * 1000) for _ in range(max(upcoming, 1))]
            row["next_run_ms"] = row["next_runs_ms"][0]
            it = croniter(schedule, now.astimezone(tz) if tz else now)
            prev_ms = int(it.get_prev(datetime).timestamp() * 1000)
            # a tick is enqueued on the workers' first queue (the deployment's first): its tag
            tick_id = job_id_for(keys.queue(client.default_queue), f"{cj.name}:{prev_ms}")
            rec = await client.job(tick_id).info()
            row["last"] = {
                "job_id": rec.job_id,
                "tick_ms": prev_ms,
                "status": rec.status.value,
                "finish_ms": rec.finish_ms,
            }
        else:
            fields = ("month", "day", "weekday", "hour", "minute", "second")
            schedule = " ".join(f"{f}={getattr(cj, f)}" for f in fields if getattr(cj, f, None) is not None)
        row["schedule"] = schedule
        rows.append(row)
    return rows
