"""``asyncjobs enqueue-many FILE.jsonl``: enqueue one job per line of a JSON Lines file.

Each line is an object with the fields of ``POST /api/jobs`` / ``asyncjobs enqueue``:
``{"function": ..., "args": [...], "kwargs": {...}, "job_id"?, "queue"?, "defer_by"?,
"defer_until"?, "priority"?}`` and the flow-control fields (``dedupe_key``, ``dedupe_for``,
``debounce``, ``throttle``, ``throttle_key``), checked the same way (the registry's argument
check, job id, queue, deferral, priority and flow-control rules). A line that flow control
folds into a job holding its window (deduplicated, debounced, throttled) is counted as such.
The file is read as a stream (``-`` is stdin) and sent in batches, one round trip per batch
(:meth:`Client.enqueue_many`). A line that does not fit is reported on stderr with its number
and the reason, and the rest go on; a job whose id is taken is skipped and counted. Exit 1 if
any line was rejected.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, TYPE_CHECKING, Any

import click
import orjson

from asyncjobs.arguments import whole_number
from asyncjobs.cli_wait import progress_option
from asyncjobs.client import Client, JobCall, call
from asyncjobs.errors import ConfigError, InvalidArguments, UnknownFunction, truncate
from asyncjobs.flow import flow_options
from asyncjobs.registry import EnqueueOptions, to_seconds

if TYPE_CHECKING:
    from asyncjobs.cli import Ctx

FLOW_FIELDS = ("dedupe_key", "dedupe_for", "debounce", "throttle", "throttle_key")
FIELDS = ("function", "args", "kwargs", "job_id", "queue", "defer_by", "defer_until", "priority", *FLOW_FIELDS)
CALL_FIELDS = frozenset(FIELDS[:3])
ALL_FIELDS = frozenset(FIELDS)


class BadLine(Exception):
    """A line that is not a job: the message says why."""


@dataclass
class Tally:
    lines: int = 0
    bytes_read: int = 0
    enqueued: int = 0
    duplicates: int = 0
    #: lines flow control folded into the job holding its window, by admission
    folded: dict[str, int] = field(default_factory=dict)
    rejected: list[int] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)
    queues: set[str] = field(default_factory=set)

    @property
    def rate(self) -> float:
        done = self.enqueued + self.duplicates + sum(self.folded.values())
        return done / max(time.perf_counter() - self.started, 1e-9)

    def folded_text(self) -> str:
        return "".join(f", {n} {admission}" for admission, n in sorted(self.folded.items()))

    def describe(self) -> str:
        return (
            f"{self.lines} lines: {self.enqueued} enqueued{self.folded_text()}, {self.duplicates} duplicates "
            f"skipped, {len(self.rejected)} rejected ({self.rate:,.0f} jobs/s)"
        )


_ARGS_TYPES = (list, type(None))
_KWARGS_TYPES = (dict, type(None))


def _field(obj: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = whole_number(obj.get(name)) if kind is int else obj.get(name)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise BadLine(f"{name} must be {what}, got {truncate(orjson.dumps(value).decode(), 60)}")
    return value


def _datetime(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        example = "2030-01-01T12:00:00Z"
        raise BadLine(f"defer_until {truncate(value, 60)!r} is not an ISO 8601 date-time like {example}") from None


def parse_line(raw: bytes, client: Client) -> JobCall:
    """The job a line describes, checked as ``enqueue`` checks it; :class:`BadLine` if it does not fit."""
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise BadLine(f"not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadLine('not a JSON object like {"function": "count_words", "args": ["some text"]}')
    if not obj.keys() <= ALL_FIELDS:
        unknown = sorted(set(obj) - ALL_FIELDS)
        raise BadLine(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(FIELDS)}")
    function, args, kwargs = obj.get("function"), obj.get("args"), obj.get("kwargs")
    if type(function) is not str or type(args) not in _ARGS_TYPES or type(kwargs) not in _KWARGS_TYPES:
        function = _field(obj, "function", str, "a function name")  # says which one does not fit
        args = _field(obj, "args", list, "a JSON list")
        kwargs = _field(obj, "kwargs", dict, "a JSON object")
    if not function:
        raise BadLine("function is missing")
    args = args or []
    kwargs = kwargs or {}
    # most lines name only the call: no options to check, build or merge (a third of the time)
    options = None if obj.keys() <= CALL_FIELDS else _options(obj)
    if client.registry is None:
        return JobCall(function, args, kwargs, options or EnqueueOptions())
    # the function's own defaults (its queue), overridden by the line's; arguments checked once
    c = call(client.registry.get(function), *args, **kwargs)
    return c if options is None else dataclasses.replace(c, options=c.options.merged(options))


def _options(obj: dict[str, Any]) -> EnqueueOptions:
    job_id = _field(obj, "job_id", str, "a string")
    queue = _field(obj, "queue", str, "a string")
    defer_by = to_seconds(_field(obj, "defer_by", (int, float), "a number of seconds"), "defer_by")
    defer_until = _datetime(_field(obj, "defer_until", str, "an ISO 8601 date-time string"))
    priority = _field(obj, "priority", int, "a whole number from 0 to 9") if "priority" in obj else 0
    flow = None
    if not obj.keys().isdisjoint(FLOW_FIELDS):
        flow = flow_options(
            dedupe_key=_field(obj, "dedupe_key", str, "a string"),
            dedupe_for=_field(obj, "dedupe_for", (int, float), "a number of seconds"),
            debounce=_field(obj, "debounce", (int, float), "a number of seconds"),
            throttle=_field(obj, "throttle", (int, float), "a number of seconds"),
            throttle_key=_field(obj, "throttle_key", str, "a string"),
        )
    return EnqueueOptions(job_id or None, queue or None, defer_by, defer_until, priority or 0, flow=flow)


def read_jobs(stream: IO[bytes], client: Client, tally: Tally, report: Any) -> Iterator[JobCall]:
    """The jobs of ``stream``'s lines (blank lines skipped); a bad line goes to ``report``."""
    for number, raw in enumerate(stream, 1):
        tally.lines, tally.bytes_read = number, tally.bytes_read + len(raw)
        if not raw.strip():
            continue
        try:
            yield parse_line(raw, client)
        except (BadLine, ConfigError, InvalidArguments, UnknownFunction) as e:
            tally.rejected.append(number)
            report(f"line {number}: {e}")


async def enqueue_stream(
    client: Client, stream: IO[bytes], tally: Tally, *, batch_size: int, report: Any, shown: Any
) -> None:
    """Enqueue ``stream``'s jobs ``batch_size`` at a time, calling ``shown()`` after each batch.

    One batch is in flight while the next is read and checked: Redis runs a batch's scripts
    while this process parses the following lines (on two cores about a third more jobs/s than
    sending and reading in turn). Batches are still sent in order, one after the other."""
    batch: list[JobCall] = []
    in_flight: asyncio.Task[None] | None = None

    async def send(calls: list[JobCall]) -> None:
        handles = await client.enqueue_many(calls, batch_size=len(calls))
        for h in handles:
            if h is None:
                tally.duplicates += 1
            elif h.admission != "created":
                tally.folded[h.admission] = tally.folded.get(h.admission, 0) + 1
            else:
                tally.enqueued += 1
                tally.queues.add(h.queue or client.default_queue)
        shown()

    async def flush() -> None:
        nonlocal batch, in_flight
        if in_flight is not None:
            await in_flight  # the previous batch's replies (its errors are raised here)
        in_flight = asyncio.create_task(send(batch))
        batch = []
        await asyncio.sleep(0)  # let it encode and write the batch before the next one is read

    try:
        for c in read_jobs(stream, client, tally, report):
            batch.append(c)
            if len(batch) >= batch_size:
                await flush()
        if batch:
            await flush()
        if in_flight is not None:
            await in_flight
    finally:
        if in_flight is not None and not in_flight.done():
            in_flight.cancel()
            await asyncio.gather(in_flight, return_exceptions=True)
    shown()


async def run_bulk(client: Client, stream: IO[bytes], tally: Tally, *, batch_size: int, mode: str) -> None:
    """:func:`enqueue_stream` with progress on stderr: a rich bar, a line per batch, or nothing."""
    if mode != "bar":
        quiet = mode == "none"
        await enqueue_stream(
            client,
            stream,
            tally,
            batch_size=batch_size,
            report=lambda text: click.echo(text, err=True),
            shown=lambda: None if quiet else click.echo(tally.describe(), err=True),
        )
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    with Progress(
        BarColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console, transient=True
    ) as bar:
        # a file's share read so far; stdin or a pipe has no size (the bar pulses)
        task = bar.add_task(tally.describe(), total=_size(stream))
        await enqueue_stream(
            client,
            stream,
            tally,
            batch_size=batch_size,
            report=lambda text: console.print(text, markup=False, highlight=False),
            shown=lambda: bar.update(task, completed=tally.bytes_read, description=tally.describe()),
        )


def _size(stream: IO[bytes]) -> int | None:
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def summary(tally: Tally) -> str:
    seconds = time.perf_counter() - tally.started
    text = (
        f"enqueued {tally.enqueued}{tally.folded_text()}, duplicates skipped {tally.duplicates}, "
        f"rejected {len(tally.rejected)} "
        f"of {tally.lines} lines in {seconds:.1f}s ({tally.rate:,.0f} jobs/s)"
    )
    if tally.rejected:
        shown = ", ".join(map(str, tally.rejected[:20])) + (", ..." if len(tally.rejected) > 20 else "")
        text += f"\nrejected lines: {shown}"
    return text


@click.command("enqueue-many")
@click.argument("path", type=click.File("rb"))
@click.option(
    "--batch-size", type=click.IntRange(1, 100_000), default=1000, show_default=True, help="jobs per round trip"
)
@progress_option("a live counter, one line per batch (plain), or nothing")
@click.pass_obj
def enqueue_many(ctx: Ctx, path: IO[bytes], batch_size: int, progress_mode: str) -> None:
    """Enqueue one job per line of a JSON Lines file (- for stdin), each line like
    {"function": ..., "args": [...], "kwargs": {...}, "job_id"?, "queue"?, "defer_by"?,
    "priority"?, "dedupe_for"?, "dedupe_key"?, "debounce"?, "throttle"?, "throttle_key"?}. A bad
    line is reported with its number and skipped (exit 1)."""
    from asyncjobs.cli import run

    tally = Tally()

    async def go() -> None:
        async with ctx.client() as client:
            await run_bulk(client, path, tally, batch_size=batch_size, mode=progress_mode)
            for queue in sorted(tally.queues):
                unserved = await client.unserved(queue)
                if unserved:
                    click.echo(f"warning: {unserved}", err=True)
        click.echo(summary(tally))

    run(ctx, go)
    if tally.rejected:
        raise SystemExit(1)
