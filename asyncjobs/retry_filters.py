"""Retry filters of a job function (``@job(retry_on=..., no_retry_on=...)``): which failures
are retried. Checked once, at decoration; asked by the runtime when a try fails."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asyncjobs.errors import ConfigError, truncate

ExceptionTypes = type[BaseException] | Iterable[type[BaseException]]
Classes = tuple[type[BaseException], ...]


def check_retry_filters(retry_on: Any, no_retry_on: Any) -> tuple[Classes, Classes]:
    """Both filters as tuples of exception classes, or :class:`ConfigError`: anything but
    exception classes, or a class named in both."""
    retry, never = _exception_types(retry_on, "retry_on"), _exception_types(no_retry_on, "no_retry_on")
    both = [t.__name__ for t in retry if t in never]
    if both:
        raise ConfigError(f"{', '.join(both)} is in both retry_on and no_retry_on: keep it in one", key="retry_on")
    return retry, never


def _exception_types(value: Any, what: str) -> Classes:
    types = (value,) if isinstance(value, type | str | bytes) else value
    try:
        out = tuple(types)
    except TypeError:
        out = (types,)
    for t in out:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise ConfigError(
                f"{what} must name exception classes, e.g. {what}=(ConnectionError,); got {truncate(repr(t))}",
                key=what,
            )
    return out


def refusal(retry_on: Classes, no_retry_on: Classes, exc: BaseException) -> str | None:
    """Why a try that raised ``exc`` is not retried (``None``: it may be). Matching is
    ``isinstance``; ``no_retry_on`` wins over ``retry_on``."""
    if no_retry_on and isinstance(exc, no_retry_on):
        return f"{type(exc).__name__} is not retried (no_retry_on)"
    if retry_on and not isinstance(exc, retry_on):
        return f"{type(exc).__name__} is not in retry_on"
    return None
