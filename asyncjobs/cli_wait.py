"""``asyncjobs enqueue ... --wait``: follow a job to its end on stderr, then print its result.

What the wait shows comes from the job's events: where it waits (the queue, before a worker
takes it), which try runs (``try 2/4``) and the last try's error, and the progress the job
reports. ``--progress bar`` draws a live bar (rich), ``plain`` writes one line per change
(for logs and pipes), ``none`` stays quiet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from asyncjobs import events
from asyncjobs.errors import truncate

MODES = ("bar", "plain", "none")
F = TypeVar("F", bound=Callable[..., Any])


def progress_option(help: str) -> Callable[[F], F]:
    """The ``--progress bar|plain|none`` option of the commands that show progress."""
    return click.option(
        "--progress", "progress_mode", type=click.Choice(MODES), default="bar", show_default=True, help=help
    )


@dataclass
class WaitState:
    """What is known about the followed job, from its events."""

    queue: str
    max_tries: int | None = None
    job_try: int = 0
    percent: float = 0.0
    message: str | None = None
    last_error: str | None = None

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == events.STARTED:
            self.job_try = int(event.get("try") or self.job_try + 1)
            self.percent, self.message = 0.0, None  # each try reports its own progress
        elif kind == events.PROGRESS:
            self.percent = float(event.get("progress") or 0.0)
            self.message = event.get("message") or None
        elif kind == events.RETRYING and isinstance(event.get("error"), dict):
            error = event["error"]
            self.last_error = truncate(f"{error.get('type')}: {error.get('message')}", 80)
        elif kind == events.COMPLETE:
            self.percent = 100.0

    def describe(self) -> str:
        if not self.job_try:
            return f"waiting for a worker on queue {self.queue}"
        parts = [f"try {self.job_try}/{self.max_tries}" if self.max_tries else f"try {self.job_try}"]
        if self.message:
            parts.append(self.message)
        if self.last_error and self.job_try > 1:
            parts.append(f"(last error: {self.last_error})")
        return " ".join(parts)


async def follow(handle: Any, state: WaitState, *, timeout: float | None, mode: str, unserved: str | None) -> Any:
    """Show the job's progress until it ends and return its result (raising what
    ``handle.result()`` raises); ``TimeoutError`` saying what it waited for after ``timeout``."""
    try:
        if mode == "bar":
            await _with_bar(handle, state, timeout)
        else:
            await _with_lines(handle, state, timeout, quiet=mode == "none")
    except TimeoutError:
        rec = await handle.info()
        where = f" on queue {state.queue}" if rec.status.value in ("queued", "deferred") else ""
        hint = f": {unserved}" if unserved and rec.status.value == "queued" else ""
        raise TimeoutError(
            f"gave up waiting after {timeout:g}s: job {handle.id} is still {rec.status.value}{where}{hint}"
        ) from None
    return await handle.result(timeout=timeout)


async def _with_lines(handle: Any, state: WaitState, timeout: float | None, *, quiet: bool) -> None:
    shown = None
    if not quiet:
        click.echo(f"{state.percent:3.0f}% {state.describe()}", err=True)
    async for event in handle.events(timeout=timeout):
        state.apply(event)
        line = f"{state.percent:3.0f}% {state.describe()}"
        if line != shown and not quiet and event.get("event") not in events.TERMINAL:
            click.echo(line, err=True)
        shown = line


async def _with_bar(handle: Any, state: WaitState, timeout: float | None) -> None:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(state.describe(), total=100)
        async for event in handle.events(timeout=timeout):
            state.apply(event)
            bar.update(task, completed=state.percent, description=state.describe())
