"""The ``asyncjobs`` command. Exit codes: 0 success, 1 job failed / not found / Redis
unreachable, 2 usage or configuration error. Errors are one line on stderr (``--verbose``
adds the traceback)."""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

import click
import orjson

from asyncjobs.cli_bulk import enqueue_many
from asyncjobs.cli_flow import admission_note, flow_control_options
from asyncjobs.cli_limits import function_group, limits_command, queue_group
from asyncjobs.cli_wait import WaitState, follow, progress_option
from asyncjobs.errors import (
    AsyncJobsError,
    BrokerUnavailable,
    ConfigError,
    InvalidArguments,
    JobFailed,
    JobNotFound,
    UnknownFunction,
    WorkerStartFailed,
)
from asyncjobs.keys import PRIORITY_MAX

T = TypeVar("T")
logger = logging.getLogger("asyncjobs.cli")


class Ctx:
    def __init__(self, settings_module: str, verbose: bool) -> None:
        self.settings_module = settings_module
        self.verbose = verbose
        self._module: Any = None

    @property
    def module(self) -> Any:
        if self._module is None:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())
            try:
                self._module = importlib.import_module(self.settings_module)
            except ModuleNotFoundError as e:
                raise ConfigError(
                    f"cannot import settings module {self.settings_module!r} ({e}); run from the project "
                    "directory or pass --settings"
                ) from e
        return self._module

    def get(self, name: str) -> Any:
        """An attribute of the settings module, or a :class:`ConfigError` naming what is missing."""
        try:
            return getattr(self.module, name)
        except AttributeError:
            raise ConfigError(
                f"settings module {self.settings_module!r} defines no {name}: see settings.py for the names "
                "asyncjobs reads (SETTINGS, REGISTRY, WorkerSettings)"
            ) from None

    def cron_jobs(self) -> list[Any]:
        """The settings module's ``CRON_JOBS`` (none if it defines no such list)."""
        return list(getattr(self.module, "CRON_JOBS", []))

    def client(self) -> Any:
        from asyncjobs.client import connect

        s = self.get("SETTINGS")
        return connect(
            s.redis_url,
            registry=getattr(self.module, "REGISTRY", None),
            queues=s.queues,
            default_queue=s.queues[0],
            durable=s.durable_enqueue,
        )


def run(ctx: Ctx, coro: Callable[[], Awaitable[T]]) -> T:
    """Run ``coro`` and map our errors to one line on stderr and an exit code."""
    try:
        return asyncio.run(coro())  # type: ignore[arg-type]
    except (ConfigError, UnknownFunction, InvalidArguments) as e:
        _fail(ctx, e, 2)
    except (JobFailed, JobNotFound, BrokerUnavailable, AsyncJobsError, TimeoutError) as e:
        _fail(ctx, e, 1)
    raise AssertionError("unreachable")


def _fail(ctx: Ctx, e: BaseException, code: int) -> None:
    if ctx.verbose:
        logger.exception("failed")
    click.echo(f"error: {e}", err=True)
    raise SystemExit(code)


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _json_arg(value: str | None, kind: type, name: str) -> Any:
    if value is None:
        return kind()
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise click.UsageError(f"{name} is not valid JSON: {e}") from None
    if not isinstance(parsed, kind):
        raise click.UsageError(f"{name} must be a JSON {'list' if kind is list else 'object'}, got {value[:80]!r}")
    return parsed


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=str).decode()


@click.group()
@click.option("--settings", "settings_module", default="settings", show_default=True, help="settings module")
@click.option("--verbose", "-v", is_flag=True, help="debug logging and tracebacks")
@click.version_option(package_name="asyncjobs", message="%(prog)s %(version)s")
@click.pass_context
def main(click_ctx: click.Context, settings_module: str, verbose: bool) -> None:
    """asyncjobs: background jobs on arq and Redis."""
    if verbose:  # every command, so an error's traceback is logged whichever one failed
        setup_logging(verbose)
    click_ctx.obj = Ctx(settings_module, verbose)


@main.command()
@click.argument("function")
@click.option("--args", "args_json", help="positional arguments as a JSON list")
@click.option("--kwargs", "kwargs_json", help="keyword arguments as a JSON object")
@click.option("--defer-by", type=float, help="start no earlier than this many seconds from now")
@click.option("--queue", help="queue name")
@click.option(
    "--priority",
    type=click.IntRange(0, PRIORITY_MAX),
    default=0,
    show_default=True,
    help="among jobs due now, higher runs first (not with --defer-by)",
)
@click.option("--job-id", help="job id (enqueue is unique by id)")
@click.option("--wait", is_flag=True, help="show progress, then print the result")
@click.option("--timeout", type=float, default=None, help="with --wait: give up after this many seconds (exit 1)")
@progress_option("with --wait: a live bar, one line per change (plain), or nothing")
@flow_control_options
@click.pass_obj
def enqueue(
    ctx: Ctx,
    function: str,
    args_json: str | None,
    kwargs_json: str | None,
    defer_by: float | None,
    queue: str | None,
    priority: int,
    job_id: str | None,
    wait: bool,
    timeout: float | None,
    progress_mode: str,
    flow: dict[str, Any],
) -> None:
    """Enqueue FUNCTION; prints the job id (with --wait, the result on the last line).
    Warns on stderr when no live worker serves the job's queue. With a flow-control option
    the id may be the job holding the window (a note on stderr says so)."""
    args = _json_arg(args_json, list, "--args")
    kwargs = _json_arg(kwargs_json, dict, "--kwargs")

    async def go() -> None:
        async with ctx.client() as client:
            handle = await client.enqueue_call(
                function, args, kwargs, job_id=job_id, queue=queue, defer_by=defer_by, priority=priority, **flow
            )
            click.echo(handle.id, err=wait)
            note = admission_note(handle.admission, handle.id)
            if note:
                click.echo(note, err=True)
                handle.queue = handle.queue or (await handle.info()).queue or client.default_queue
            unserved = await client.unserved(handle.queue)
            if unserved:
                click.echo(f"warning: {unserved}", err=True)
            if wait:
                known = client.registry is not None and function in client.registry
                tries = client.registry.get(function).opts.retries + 1 if known else None
                limit = f" (up to {timeout:g}s)" if timeout is not None else " (Ctrl-C stops waiting; the job stays)"
                click.echo(f"waiting for job {handle.id} ({function}) on queue {handle.queue}{limit}", err=True)
                state = WaitState(handle.queue, tries)
                result = await follow(handle, state, timeout=timeout, mode=progress_mode, unserved=unserved)
                click.echo(dumps(result))

    run(ctx, go)


@main.command()
@click.argument("job_id")
@click.pass_obj
def status(ctx: Ctx, job_id: str) -> None:
    """Print the job's record as JSON (exit 1 if there is no such job)."""

    async def go() -> None:
        async with ctx.client() as client:
            rec = await client.job(job_id).info()
            click.echo(dumps(rec.as_dict()))
            if rec.status.value == "not_found":
                raise SystemExit(1)

    run(ctx, go)


@main.command()
@click.argument("job_id")
@click.option("--timeout", type=float, default=0, help="seconds to wait for it to finish")
@click.pass_obj
def result(ctx: Ctx, job_id: str, timeout: float) -> None:
    """Print the job's result (exit 1 if it failed or does not exist)."""

    async def go() -> None:
        async with ctx.client() as client:
            click.echo(dumps(await client.job(job_id).result(timeout=timeout or 0.001)))

    run(ctx, go)


@main.command()
@click.argument("job_id")
@click.pass_obj
def abort(ctx: Ctx, job_id: str) -> None:
    """Abort a queued or running job (exit 1 if it could not be aborted)."""

    async def go() -> None:
        async with ctx.client() as client:
            ok = await client.job(job_id).abort()
            click.echo("aborted" if ok else "not aborted")
            if not ok:
                raise SystemExit(1)

    run(ctx, go)


@main.command()
@click.pass_obj
def queues(ctx: Ctx) -> None:
    """Show queue sizes."""

    async def go() -> None:
        async with ctx.client() as client:
            for q in await client.queue_stats():
                click.echo(f"{q.name:<16} queued={q.queued} deferred={q.deferred} in_progress={q.in_progress}")

    run(ctx, go)


@main.command()
@click.pass_obj
def workers(ctx: Ctx) -> None:
    """Show live workers."""

    async def go() -> None:
        async with ctx.client() as client:
            for w in await client.workers():
                click.echo(f"{w['id']:<40} queues={','.join(w['queues'])} running={w['running']}/{w['concurrency']}")

    run(ctx, go)


@main.command("cron")
@click.option("--upcoming", type=click.IntRange(1, 20), default=3, show_default=True, help="next runs to show")
@click.pass_obj
def cron_command(ctx: Ctx, upcoming: int) -> None:
    """List the cron jobs (the settings module's CRON_JOBS): schedule, next runs, last run."""
    from asyncjobs.cron import cron_table

    cron_jobs = ctx.cron_jobs()

    async def go() -> None:
        async with ctx.client() as client:
            rows = await cron_table(client, cron_jobs, upcoming=upcoming)
        for cj, row in zip(cron_jobs, rows, strict=True):
            tz = getattr(cj, "tz", None) or UTC
            nexts = ", ".join(_when(ms, tz) for ms in row["next_runs_ms"]) or "-"
            last = row["last"]
            ran = f"{_when(last['tick_ms'], tz)} {last['status']}" if last else "-"
            click.echo(f"{row['name']}  {row['schedule']} ({row['tz']})  next: {nexts}  last: {ran}")
        if not cron_jobs:
            click.echo(f"no cron jobs: {ctx.settings_module}.CRON_JOBS is empty or missing", err=True)

    run(ctx, go)


def _when(ms: int, tz: Any) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")


@main.group()
def dead() -> None:
    """Inspect, retry or purge dead-lettered jobs."""


@dead.command("list")
@click.option("--limit", type=int, default=50)
@click.pass_obj
def dead_list(ctx: Ctx, limit: int) -> None:
    async def go() -> None:
        async with ctx.client() as client:
            total, entries = await client.dead_letters(limit=limit)
            for e in entries:
                error = f"{e.error.get('type')}: {e.error.get('message', '')[:80]}"
                click.echo(f"{e.job_id}  {e.function}  tries={e.tries}  {error}")
            click.echo(f"{total} dead-lettered job(s)", err=True)

    run(ctx, go)


@dead.command("retry")
@click.argument("job_id", required=False)
@click.option("--all", "retry_all", is_flag=True, help="retry every dead-lettered job")
@click.pass_obj
def dead_retry(ctx: Ctx, job_id: str | None, retry_all: bool) -> None:
    """Re-enqueue JOB_ID (or every job, with --all) under its own id; prints the ids."""
    if bool(job_id) == retry_all:
        raise click.UsageError("give a JOB_ID or --all")

    async def go() -> None:
        async with ctx.client() as client:
            if job_id:
                click.echo((await client.retry_dead(job_id)).id)
                return
            retried, skipped = await _retry_every_dead(client)
            click.echo(f"retried {retried}" + (f", {skipped} could not be retried" if skipped else ""), err=True)
            if skipped:
                raise SystemExit(1)

    run(ctx, go)


async def _retry_every_dead(client: Any) -> tuple[int, int]:
    """Retry each job dead-lettered now, once (the ids are read first: a retried job that fails
    again at once is dead-lettered again, and must not be retried in a loop). One that cannot
    be retried is reported and passed over."""
    ids: list[str] = []
    while True:
        _, entries = await client.dead_letters(offset=len(ids), limit=500)
        if not entries:
            break
        ids += [e.job_id for e in entries]
    retried = skipped = 0
    for job_id in dict.fromkeys(ids):
        try:
            click.echo((await client.retry_dead(job_id)).id)
            retried += 1
        except AsyncJobsError as err:
            click.echo(f"warning: {job_id}: {err}", err=True)
            skipped += 1
    return retried, skipped


@dead.command("purge")
@click.pass_obj
def dead_purge(ctx: Ctx) -> None:
    async def go() -> None:
        async with ctx.client() as client:
            click.echo(f"purged {await client.purge_dead()}")

    run(ctx, go)


@main.command()
@click.argument("settings_path", required=False, default=None)
@click.option("--queues", help="comma-separated queues, highest priority first")
@click.option("--concurrency", type=int, help="jobs run at once")
@click.option("--processes", type=int, default=1, show_default=True, help="worker processes to supervise")
@click.option("--burst", is_flag=True, help="exit when the queues are empty")
@click.option("--supervisor-fd", type=int, default=None, hidden=True)  # set by --processes N for its children
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="serve Prometheus metrics on this port")
@click.pass_obj
def worker(
    ctx: Ctx,
    settings_path: str | None,
    queues: str | None,
    concurrency: int | None,
    processes: int,
    burst: bool,
    supervisor_fd: int | None,
    metrics_port: int | None,
) -> None:
    """Run a worker (SETTINGS_PATH defaults to <settings>.WorkerSettings)."""
    from asyncjobs import runner, supervisor

    setup_logging(ctx.verbose)
    path = settings_path or f"{ctx.settings_module}.WorkerSettings"
    overrides: dict[str, Any] = {}
    if queues:
        overrides["queues"] = [q.strip() for q in queues.split(",") if q.strip()]
    if concurrency:
        overrides["max_jobs"] = concurrency
    if burst:
        overrides["burst"] = True
    if metrics_port is not None:
        if processes > 1:
            raise click.UsageError("--metrics-port serves one process: run one worker per port instead of --processes")
        overrides["metrics_port"] = metrics_port
    try:
        if supervisor_fd is not None:
            supervisor.attach(supervisor_fd)
        if processes > 1:
            raise SystemExit(supervisor.supervise(processes, sys.argv))
        runner.run_worker(path, overrides)
    except WorkerStartFailed as e:
        _fail(ctx, e, e.exit_code)
    except (ConfigError, UnknownFunction) as e:
        supervisor.report_failure(str(e))
        _fail(ctx, e, 2)
    except AsyncJobsError as e:
        supervisor.report_failure(str(e))
        _fail(ctx, e, 1)


@main.command("web")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=int, default=8000, show_default=True)
@click.pass_obj
def web_command(ctx: Ctx, host: str, port: int) -> None:
    """Serve the HTTP API (and dashboard). Beyond loopback it needs ASYNCJOBS_API_TOKEN."""
    setup_logging(ctx.verbose)
    try:
        from web.server import run_web

        run_web(ctx.get("SETTINGS"), ctx.get("REGISTRY"), host, port, ctx.cron_jobs())
    except (ConfigError, UnknownFunction) as e:
        _fail(ctx, e, 2)


@main.command("dev")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=int, default=8000, show_default=True)
@click.pass_obj
def dev_command(ctx: Ctx, host: str, port: int) -> None:
    """Web + worker in one process; the embedded in-memory broker unless REDIS_URL is set."""
    setup_logging(ctx.verbose)
    try:
        from web.server import run_dev

        dev_mode = getattr(ctx.module, "dev_mode", None)
        if dev_mode is not None:  # the settings module's demo set-up (settings.py: the example jobs)
            dev_mode()
        settings = ctx.get("SETTINGS")
        url = getattr(ctx.module, "DEV_REDIS_URL", None) or settings.redis_url
        run_dev(settings, ctx.get("REGISTRY"), ctx.get("WorkerSettings"), url, host, port, ctx.cron_jobs())
    except (ConfigError, UnknownFunction) as e:
        _fail(ctx, e, 2)


@main.command("worker-health")
@click.option("--any-host", is_flag=True, help="accept a live worker on any host, not only this one")
@click.pass_obj
def worker_health(ctx: Ctx, any_host: bool) -> None:
    """Exit 0 if a worker on this host (by host name, as a container's) has a fresh heartbeat.

    Meant for health checks: a worker's heartbeat lives about five housekeeping intervals, so a
    hung or dead worker fails it within seconds; Redis unreachable fails it too."""
    import socket

    host = socket.gethostname()

    async def go() -> None:
        async with ctx.client() as client:
            live = [w for w in await client.workers() if any_host or w.get("host") == host]
        if not live:
            where = "any host" if any_host else f"host {host!r}"
            click.echo(f"error: no worker on {where} has a fresh heartbeat", err=True)
            raise SystemExit(1)
        running = sum(int(w.get("running", 0)) for w in live)
        click.echo(f"ok: {len(live)} live worker process(es), {running} job(s) running")

    run(ctx, go)


main.add_command(enqueue_many)
main.add_command(queue_group)
main.add_command(function_group)
main.add_command(limits_command)
