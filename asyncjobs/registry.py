"""Job definitions: the ``@job`` decorator, the typed :class:`JobFunction` it returns, and
:class:`Registry`, the set of functions a deployment exposes."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from arq.utils import to_unix_ms

from asyncjobs.backoff import BackoffLike, BackoffPolicy, as_backoff
from asyncjobs.errors import ConfigError, InvalidArguments, UnknownFunction, truncate
from asyncjobs.keys import PRIORITY_MAX

P = ParamSpec("P")
R = TypeVar("R")

#: the furthest ahead a job may be deferred (``defer_by`` or ``defer_until``): 366 days
MAX_DEFER_S = 366 * 24 * 3600.0

Seconds = float | int | timedelta


def to_seconds(value: Seconds | None, what: str) -> float | None:
    if value is None:
        return None
    s = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(s, bool) or not isinstance(s, (int, float)) or s < 0:
        raise ConfigError(f"{what} {value!r} is not a duration: give seconds >= 0 or a timedelta", key=what)
    return float(s)


def until_ms(when: datetime) -> int:
    """Epoch ms of a ``defer_until`` (a naive time is local, as in arq; at the calendar's edge,
    where the local conversion fails, it is read as UTC)."""
    try:
        return to_unix_ms(when)
    except (ValueError, OverflowError):
        return to_unix_ms(when.replace(tzinfo=UTC))


def check_defer(defer_by: float | None, defer_until: datetime | None, now_ms: int) -> None:
    """A deferral at most :data:`MAX_DEFER_S` ahead of ``now_ms``, the same bound for both forms
    (a past ``defer_until`` is fine: it means now)."""
    bound = f"at most {MAX_DEFER_S:.0f} s (366 days) ahead"
    if defer_by is not None and defer_by > MAX_DEFER_S:
        raise ConfigError(f"defer_by {defer_by:g} s is too far ahead: {bound}", key="defer_by")
    if defer_until is None:
        return
    if not isinstance(defer_until, datetime):
        raise ConfigError(f"defer_until {truncate(defer_until)} is not a datetime", key="defer_until")
    if until_ms(defer_until) - now_ms > MAX_DEFER_S * 1000:
        raise ConfigError(f"defer_until {defer_until.isoformat()} is too far ahead: {bound}", key="defer_until")


def check_priority(priority: object, *, deferred: bool = False) -> int:
    """``priority`` if it is a whole number from 0 to ``PRIORITY_MAX``, not given with a
    deferral (``deferred``) unless it is 0; else :class:`ConfigError` saying why."""
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= PRIORITY_MAX:
        raise ConfigError(
            f"priority {truncate(repr(priority))} is not valid: give a whole number from 0 (the default) "
            f"to {PRIORITY_MAX} (runs first)",
            key="priority",
        )
    if priority and deferred:
        raise ConfigError(
            f"priority {priority} cannot be combined with defer_by or defer_until: priority orders jobs "
            "that are due now; drop the deferral or the priority",
            key="priority",
        )
    return priority


@dataclass(frozen=True)
class EnqueueOptions:
    """How one enqueue places a job; given separately from the job's own arguments.

    ``priority`` (0-9, higher first) orders jobs that are due now; it cannot be combined with
    ``defer_by`` / ``defer_until`` (:class:`ConfigError`).
    """

    job_id: str | None = None
    queue: str | None = None
    defer_by: float | None = None
    defer_until: datetime | None = None
    priority: int = 0

    def __post_init__(self) -> None:
        if self.priority.__class__ is not int or self.priority:  # nothing more to check for 0
            check_priority(self.priority, deferred=self.defer_by is not None or self.defer_until is not None)

    def merged(self, other: EnqueueOptions) -> EnqueueOptions:
        return EnqueueOptions(
            job_id=other.job_id or self.job_id,
            queue=other.queue or self.queue,
            defer_by=other.defer_by if other.defer_by is not None else self.defer_by,
            defer_until=other.defer_until or self.defer_until,
            priority=other.priority or self.priority,
        )


@dataclass(frozen=True)
class JobOptions:
    """Per-function settings: how it runs, retries and keeps its result."""

    name: str
    timeout: float | None = None
    retries: int = 0
    backoff: BackoffPolicy = field(default_factory=lambda: as_backoff(None))
    queue: str | None = None
    keep_result: float | None = None
    executor: str | None = None


class JobFunction(Generic[P, R]):
    """A registered job. Call it like the original coroutine (``await f(ctx, ...)``) or
    enqueue it with ``client.enqueue(f, ...)``, checked against its parameters.

    ``f.options(job_id=..., queue=..., defer_by=..., defer_until=..., priority=...)`` returns
    a copy that enqueues with those options: they never mix with the function's own arguments.
    """

    def __init__(
        self,
        func: Callable[Concatenate[Any, P], Awaitable[R]],
        options: JobOptions,
        enqueue_options: EnqueueOptions | None = None,
    ) -> None:
        check_executor(func, options)
        self.func = func
        self.opts = options
        self.enqueue_options = enqueue_options or EnqueueOptions()
        self.signature = inspect.signature(func)
        self._positional = positional_range(self.signature, skip_ctx=options.executor is None)
        self.__doc__ = func.__doc__
        self.__name__ = getattr(func, "__name__", options.name)
        self.__wrapped__ = func

    @property
    def name(self) -> str:
        return self.opts.name

    def __call__(self, ctx: Any, *args: P.args, **kwargs: P.kwargs) -> Awaitable[R]:
        return self.func(ctx, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<JobFunction {self.name}>"

    def options(
        self,
        *,
        job_id: str | None = None,
        queue: str | None = None,
        defer_by: Seconds | None = None,
        defer_until: datetime | None = None,
        priority: int = 0,
    ) -> JobFunction[P, R]:
        """A copy of this job that enqueues with the given placement options. ``priority``
        (0-9, higher runs first) orders jobs that are due now: not with ``defer_*``."""
        extra = EnqueueOptions(job_id, queue, to_seconds(defer_by, "defer_by"), defer_until, priority)
        return JobFunction(self.func, self.opts, self.enqueue_options.merged(extra))

    def with_settings(self, **changes: Any) -> JobFunction[P, R]:
        """A copy with some :class:`JobOptions` changed (handy in tests)."""
        return JobFunction(self.func, replace(self.opts, **changes), self.enqueue_options)

    def bind(self, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
        """Raise :class:`InvalidArguments` if ``args``/``kwargs`` cannot call this function."""
        if not kwargs and self._positional is not None and isinstance(args, tuple):
            low, high = self._positional  # fast path: what Signature.bind would accept
            if low <= len(args) <= high:
                return
        try:
            if self.opts.executor is None:
                self.signature.bind(None, *args, **kwargs)
            else:  # plain functions run in an executor take no ctx
                self.signature.bind(*args, **kwargs)
        except TypeError as e:
            raise InvalidArguments(self.name, [{"loc": ["args"], "msg": str(e)}]) from None


def positional_range(signature: inspect.Signature, *, skip_ctx: bool) -> tuple[int, float] | None:
    """``(fewest, most)`` positional arguments (besides ``ctx`` when ``skip_ctx``) that bind to
    ``signature`` with no keyword arguments, or ``None`` when that is not so simple (a required
    keyword-only parameter, or no positional ``ctx`` parameter to skip)."""
    params = list(signature.parameters.values())
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    if skip_ctx:
        if not params or params[0].kind not in positional:
            return None
        params = params[1:]
    low, high = 0, 0.0
    for p in params:
        if p.kind in positional:
            high += 1
            low += p.default is inspect.Parameter.empty
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            high = float("inf")
        elif p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty:
            return None
    return low, high


EXECUTORS = ("thread", "process")


def check_executor(func: Callable[..., Any], options: JobOptions) -> None:
    """Async functions run on the event loop; plain ones need ``executor="thread"|"process"``
    (a process job must be a module-level function, so the pool's processes can import it)."""
    name = options.name
    if options.executor is None:
        if not inspect.iscoroutinefunction(func):
            raise ConfigError(
                f"job {name}: {func!r} is not an 'async def' function: make it async, or run it "
                "in an executor with @job(executor='thread') or @job(executor='process')",
                key=name,
            )
        return
    if options.executor not in EXECUTORS:
        raise ConfigError(f"job {name}: executor {options.executor!r} is not 'thread' or 'process'", key="executor")
    if inspect.iscoroutinefunction(func):
        raise ConfigError(
            f"job {name}: executor={options.executor!r} is for plain functions; "
            "an 'async def' job runs on the event loop, drop executor=",
            key="executor",
        )
    if options.executor == "process" and "<locals>" in getattr(func, "__qualname__", "<locals>"):
        raise ConfigError(
            f"job {name}: a process job must be a module-level function (worker processes import it by name)",
            key="executor",
        )


@overload
def job(func: Callable[Concatenate[Any, P], Awaitable[R]], /) -> JobFunction[P, R]: ...


@overload
def job(
    *,
    name: str | None = None,
    timeout: Seconds | None = None,
    retries: int = 0,
    backoff: BackoffLike = None,
    queue: str | None = None,
    keep_result: Seconds | None = None,
    executor: None = None,
) -> Callable[[Callable[Concatenate[Any, P], Awaitable[R]]], JobFunction[P, R]]: ...


@overload
def job(
    *,
    name: str | None = None,
    timeout: Seconds | None = None,
    retries: int = 0,
    backoff: BackoffLike = None,
    queue: str | None = None,
    keep_result: Seconds | None = None,
    executor: str,
) -> Callable[[Callable[..., Any]], JobFunction[..., Any]]: ...


def job(
    func: Any = None,
    /,
    *,
    name: str | None = None,
    timeout: Seconds | None = None,
    retries: int = 0,
    backoff: BackoffLike = None,
    queue: str | None = None,
    keep_result: Seconds | None = None,
    executor: str | None = None,
) -> Any:
    """Declare an ``async def f(ctx, ...)`` as a job.

    :param name: the name jobs are enqueued by (default: the function's ``__name__``)
    :param timeout: seconds one try may run before it is cancelled and counted as failed
    :param retries: how many times a failed try is retried (0: run once)
    :param backoff: delay before each retry: a policy, seconds (fixed) or ``attempt -> seconds``;
        default exponential with jitter, 1 s doubling up to 5 min
    :param queue: the queue jobs of this function go to unless the enqueue says otherwise
    :param keep_result: seconds the result (or error) is kept, for success and failure alike
    :param executor: ``"thread"`` or ``"process"`` to run a plain (non-async) function, called
        with its arguments only (no ctx), in a thread or in the worker's process pool, so
        blocking or CPU-heavy code cannot freeze the event loop. A process job that times out
        or is aborted is killed with its process (the pool starts a fresh one). A thread
        cannot be killed: the job ends at once, its :func:`~asyncjobs.cancel_event` is set,
        and the function should check that and return (see :mod:`asyncjobs.executors`).
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries {retries!r} must be a whole number >= 0", key="retries")

    def decorate(f: Callable[Concatenate[Any, P], Awaitable[R]]) -> JobFunction[P, R]:
        opts = JobOptions(
            name=name or f.__name__,
            timeout=to_seconds(timeout, "timeout"),
            retries=retries,
            backoff=as_backoff(backoff),
            queue=queue,
            keep_result=to_seconds(keep_result, "keep_result"),
            executor=executor,
        )
        return JobFunction(f, opts)

    return decorate(func) if func is not None else decorate


class Registry:
    """The job functions a deployment serves, by name."""

    def __init__(self, functions: Iterable[JobFunction[Any, Any]] = ()) -> None:
        self._functions: dict[str, JobFunction[Any, Any]] = {}
        for f in functions:
            self.add(f)

    def add(self, function: JobFunction[Any, Any]) -> JobFunction[Any, Any]:
        if not isinstance(function, JobFunction):
            raise ConfigError(f"{function!r} is not a job: decorate it with @asyncjobs.job")
        if function.name in self._functions and self._functions[function.name] is not function:
            raise ConfigError(f"two job functions are named {function.name!r}: give one a name=", key=function.name)
        self._functions[function.name] = function
        return function

    def get(self, name: str) -> JobFunction[Any, Any]:
        try:
            return self._functions[name]
        except KeyError:
            raise UnknownFunction(name, list(self._functions)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._functions

    def __iter__(self) -> Iterator[JobFunction[Any, Any]]:
        return iter(self._functions.values())

    def __len__(self) -> int:
        return len(self._functions)

    def names(self) -> list[str]:
        return sorted(self._functions)
