"""The flow-control options of ``asyncjobs enqueue`` (dedupe, debounce, throttle; see
:mod:`asyncjobs.flow`), gathered into one ``flow`` keyword for
:meth:`asyncjobs.Client.enqueue_call`, and the note that says what such an enqueue did."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])
NAMES = ("dedupe_key", "dedupe_for", "debounce", "throttle", "throttle_key")
_SECONDS = click.FloatRange(min=0, min_open=True)


def flow_control_options(command: F) -> F:
    """Add ``--dedupe-key K --dedupe-for S``, ``--debounce S``, ``--throttle S --throttle-key K``;
    the command gets them as ``flow={...}`` (only those given; combinations are checked by
    :func:`asyncjobs.flow.flow_options`, a refusal exits 2)."""

    @functools.wraps(command)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        flow = {name: kwargs.pop(name) for name in NAMES if kwargs.get(name) is not None}
        for name in NAMES:
            kwargs.pop(name, None)
        return command(*args, flow=flow, **kwargs)

    options = [
        click.option("--dedupe-key", help="with --dedupe-for or --debounce: the key (default: the arguments)"),
        click.option("--dedupe-for", type=_SECONDS, help="seconds: an enqueue with the same key returns this job"),
        click.option("--debounce", type=_SECONDS, help="seconds: start after the last enqueue with the same key"),
        click.option("--throttle", type=_SECONDS, help="seconds: one job per key per window, the others dropped"),
        click.option("--throttle-key", help="with --throttle: the key (default: the function)"),
    ]
    for option in reversed(options):
        wrapped = option(wrapped)
    return wrapped  # type: ignore[return-value]


def admission_note(admission: str, job_id: str) -> str | None:
    """One line for stderr when the enqueue created no new job, else ``None``."""
    notes = {
        "deduplicated": f"deduplicated: job {job_id} holds the dedupe window; no new job",
        "debounced": f"debounced: job {job_id} got these arguments and starts later",
        "throttled": f"throttled: dropped; job {job_id} holds the throttle window",
    }
    return notes.get(admission)
