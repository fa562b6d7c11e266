"""Job definitions: the ``@job`` decorator, the typed :class:`JobFunction` it returns, and
:class:`Registry`, the set of functions a deployment exposes."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Concatenate, Generic, ParamSpec, TypeVar, overload

from arq.utils import timestamp_ms, to_ms, to_unix_ms

from asyncjobs.arguments import ArgumentSpec
from asyncjobs.backoff import BackoffLike, BackoffPolicy, as_backoff
from asyncjobs.errors import ConfigError, UnknownFunction, truncate
from asyncjobs.flow import DEBOUNCE, Flow, flow_options
from asyncjobs.keys import PRIORITY_MAX as PRIORITY_MAX  # the highest priority (also for the API's schema)
from asyncjobs.keys import RESERVED_ID_PREFIXES, priority_score, tag_of
from asyncjobs.limits import KeyFunction, RateLimit, check_limit_key, check_max_concurrency
from asyncjobs.retry_filters import ExceptionTypes, check_retry_filters, refusal

if TYPE_CHECKING:
    from asyncjobs.canvas import Signature

P = ParamSpec("P")
R = TypeVar("R")

#: the furthest ahead a job may be deferred (``defer_by`` or ``defer_until``): 366 days
MAX_DEFER_S = 366 * 24 * 3600.0

Seconds = float | int | timedelta
# a queue name may be a hash tag (``{high}``: the tagged layout of asyncjobs.keys, which cluster
# mode needs); a job id then starts with its queue's tag
ID_RE = re.compile(r"^(\{[A-Za-z0-9_.\-]{1,62}\})?[A-Za-z0-9_.:\-]{1,128}$")
# an id to enqueue under over HTTP: the queue's tag is put in front by the enqueue
NEW_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
QUEUE_RE = re.compile(r"^([A-Za-z0-9_.\-]{1,64}|\{[A-Za-z0-9_.\-]{1,62}\})$")


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not ID_RE.fullmatch(job_id):  # fullmatch: "$" would allow a final "\n"
        raise ConfigError(
            f"job id {job_id!r} is not valid: use 1-128 letters, digits and _.:- (after a queue's {{tag}})",
            key="job_id",
        )
    return job_id


def check_new_job_id(job_id: str) -> str:
    """A valid id a client may enqueue under: not in a namespace the scheduler owns."""
    check_job_id(job_id)
    bare = job_id.removeprefix(tag_of(job_id))  # (a queue's hash tag may come first)
    for prefix in RESERVED_ID_PREFIXES:
        if bare.startswith(prefix):
            raise ConfigError(
                f"job_id {truncate(job_id)!r} is reserved: ids starting with {prefix!r} belong to the cron "
                "scheduler; pick another job_id",
                key="job_id",
            )
    return job_id


def check_queue(name: str) -> str:
    if not isinstance(name, str) or not QUEUE_RE.fullmatch(name):
        raise ConfigError(
            f"queue name {name!r} is not valid: use 1-64 letters, digits and _.- (or {{name}}: a hash tag)", key="queue"
        )
    return name


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
    """How one enqueue places a job; given separately from the job's own arguments. Checked
    once, when built (:class:`ConfigError` naming the option): the job id (not a cron tick's
    unless ``internal``, our own re-enqueue), the queue name, ``priority`` (a whole number 0-9,
    higher first, only for jobs due now: not with ``defer_by`` / ``defer_until``), one
    deferral at most, at most :data:`MAX_DEFER_S` ahead; ``flow`` (dedupe, debounce or
    throttle, checked by :func:`asyncjobs.flow.flow_options`), debounce being a deferral of its
    own. :meth:`score` places it in its queue.
    """

    job_id: str | None = None
    queue: str | None = None
    defer_by: float | None = None
    defer_until: datetime | None = None
    priority: int = 0
    flow: Flow | None = None
    #: the keys of the function's per-key rate and concurrency limits this job counts against
    rate_key: str | None = None
    concurrency_key: str | None = None
    #: enqueued through arq's own API (its cron scheduler, ``ctx["redis"].enqueue_job``) or our
    #: re-enqueue of a dead letter: the id and the deferral are taken as arq takes them (any id,
    #: a reserved one included; no bound on the deferral)
    internal: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if self.rate_key is not None or self.concurrency_key is not None:
            self._check_limit_keys()
        if (
            self.job_id is None
            and self.queue is None
            and self.defer_by is None
            and self.defer_until is None
            and self.flow is None
        ):
            if self.priority.__class__ is not int or self.priority:  # nothing more to check for 0
                check_priority(self.priority)
            return
        if self.job_id is not None and not self.internal:
            check_new_job_id(self.job_id)
        if self.queue is not None:
            check_queue(self.queue)
        if self.defer_by is not None:
            object.__setattr__(self, "defer_by", to_seconds(self.defer_by, "defer_by"))
        deferred = self.defer_by is not None or self.defer_until is not None
        if self.defer_by is not None and self.defer_until is not None:
            raise ConfigError("use either defer_until or defer_by, not both", key="defer_until")
        if self.priority.__class__ is not int or self.priority:
            check_priority(self.priority, deferred=deferred)
        if self.flow is not None and self.flow.mode == DEBOUNCE and (deferred or self.priority):
            raise ConfigError("debounce defers the job itself: drop defer_by / defer_until / priority", key="debounce")
        if deferred and not self.internal:
            check_defer(self.defer_by, self.defer_until, timestamp_ms())

    def _check_limit_keys(self) -> None:
        for what in ("rate_key", "concurrency_key"):
            if getattr(self, what) is not None:
                object.__setattr__(self, what, check_limit_key(getattr(self, what), what))

    def score(self, now_ms: int) -> tuple[int, int]:
        """``(queue score, run-at ms)`` of this job enqueued at ``now_ms``: a past
        ``defer_until`` means now (a score below now would read as a priority,
        :func:`asyncjobs.keys.decode_score`); a priority moves a due job ahead."""
        if self.defer_until is not None:
            run_at = max(until_ms(self.defer_until), now_ms)
        elif self.defer_by:
            run_at = now_ms + to_ms(self.defer_by)
        elif self.flow is not None and self.flow.mode == DEBOUNCE:
            run_at = now_ms + to_ms(self.flow.window)
        else:
            return (priority_score(now_ms, self.priority) if self.priority else now_ms), now_ms
        return run_at, run_at

    def merged(self, other: EnqueueOptions) -> EnqueueOptions:
        return EnqueueOptions(
            job_id=other.job_id or self.job_id,
            queue=other.queue or self.queue,
            defer_by=other.defer_by if other.defer_by is not None else self.defer_by,
            defer_until=other.defer_until or self.defer_until,
            priority=other.priority or self.priority,
            rate_key=other.rate_key or self.rate_key,
            concurrency_key=other.concurrency_key or self.concurrency_key,
            flow=other.flow or self.flow,
            internal=self.internal or other.internal,
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
    #: flow control (:mod:`asyncjobs.limits`): starts per period and running jobs, fleet-wide,
    #: per function or per key (computed from a job's arguments at enqueue)
    rate_limit: RateLimit | None = None
    max_concurrency: int | None = None
    rate_key: KeyFunction | None = None
    concurrency_key: KeyFunction | None = None
    #: exceptions a failed try is retried for (empty: any), and ones it never is
    retry_on: tuple[type[BaseException], ...] = ()
    no_retry_on: tuple[type[BaseException], ...] = ()

    def not_retried(self, exc: BaseException) -> str | None:
        """Why a try that raised ``exc`` is not retried by the filters (``None``: it may be)."""
        return refusal(self.retry_on, self.no_retry_on, exc)


class JobFunction(Generic[P, R]):
    """A registered job. Call it like the original coroutine (``await f(ctx, ...)``) or
    enqueue it with ``client.enqueue(f, ...)``, checked against its parameters.

    ``f.options(job_id=..., queue=..., defer_by=..., defer_until=..., priority=...,
    depends_on=...)`` returns a copy that enqueues with those options: they never mix with the
    function's own arguments. ``f.s(...)`` / ``f.si(...)`` make workflow signatures.
    """

    def __init__(
        self,
        func: Callable[Concatenate[Any, P], Awaitable[R]],
        options: JobOptions,
        enqueue_options: EnqueueOptions | None = None,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        check_executor(func, options)
        self.func = func
        self.opts = options
        self.enqueue_options = enqueue_options or EnqueueOptions()
        #: ids of the jobs this one waits for (``options(depends_on=...)``)
        self.depends_on = depends_on
        self.signature = inspect.signature(func)
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
        dedupe_key: str | None = None,
        dedupe_for: Seconds | None = None,
        debounce: Seconds | None = None,
        throttle: Seconds | None = None,
        throttle_key: str | None = None,
        rate_key: str | None = None,
        concurrency_key: str | None = None,
        depends_on: Iterable[str | Any] | None = None,
    ) -> JobFunction[P, R]:
        """A copy of this job that enqueues with the given placement options. ``priority``
        (0-9, higher runs first) orders jobs that are due now: not with ``defer_*``.
        Flow control (one of them; see :mod:`asyncjobs.flow`): ``dedupe_for=S`` returns the
        job enqueued in the last ``S`` seconds with the same ``dedupe_key`` (default: the same
        arguments) instead of a new one; ``debounce=S`` defers the job ``S`` seconds and lets
        later enqueues with the same ``dedupe_key`` replace its arguments and push it back
        while it waits; ``throttle=S`` accepts one job per ``throttle_key`` (default: the
        function) every ``S`` seconds and drops the others (``handle.throttled``).
        ``rate_key``/``concurrency_key``: the key of the function's per-key limits the job
        counts against (instead of what the function's key function computes).
        ``depends_on``: jobs (handles or ids) this one waits for; it is queued in the call that
        ends the last of them, and cancelled if one does not complete (not with flow control)."""
        flow = flow_options(
            dedupe_key=dedupe_key,
            dedupe_for=dedupe_for,
            debounce=debounce,
            throttle=throttle,
            throttle_key=throttle_key,
        )
        extra = EnqueueOptions(
            job_id,
            queue,
            to_seconds(defer_by, "defer_by"),
            defer_until,
            priority,
            flow,
            rate_key=rate_key,
            concurrency_key=concurrency_key,
        )
        deps = self.depends_on if depends_on is None else tuple(dependency_id(d) for d in depends_on)
        placed = JobFunction(self.func, self.opts, self.enqueue_options.merged(extra), deps)
        if "arguments" in self.__dict__:  # same function and options: share what was built
            placed.__dict__["arguments"] = self.__dict__["arguments"]
        return placed

    def with_settings(self, **changes: Any) -> JobFunction[P, R]:
        """A copy with some :class:`JobOptions` changed (handy in tests)."""
        return JobFunction(self.func, replace(self.opts, **changes), self.enqueue_options, self.depends_on)

    def s(self, *args: Any, **kwargs: Any) -> Signature[R]:
        """A workflow signature: in a chain (or as a chord's callback) the job receives the
        previous step's result as its first argument, then ``args``/``kwargs``."""
        from asyncjobs.canvas import Signature

        return Signature(self, args, kwargs)

    def si(self, *args: P.args, **kwargs: P.kwargs) -> Signature[R]:
        """An immutable workflow signature: the job runs with exactly these arguments."""
        from asyncjobs.canvas import Signature

        return Signature(self, args, kwargs, immutable=True)

    @cached_property
    def arguments(self) -> ArgumentSpec:
        """How this function's arguments are checked, encoded at enqueue and decoded in the worker."""
        return ArgumentSpec(self)

    def bind(self, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
        """Raise :class:`InvalidArguments` if ``args``/``kwargs`` cannot call this function:
        wrong count, unknown names, or values that do not fit the type hints."""
        self.encode_arguments(args, kwargs)

    def encode_arguments(self, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Sequence[Any], dict[str, Any]]:
        """``args``/``kwargs`` checked and made JSON-like for the payload (see :mod:`asyncjobs.arguments`)."""
        return self.arguments.encode(args, kwargs)


def dependency_id(dep: Any) -> str:
    """The job id of a ``depends_on`` entry: an id, or anything with one (a job handle)."""
    job_id = dep if isinstance(dep, str) else getattr(dep, "id", None)
    if not isinstance(job_id, str):
        raise ConfigError(f"depends_on entry {truncate(repr(dep))} is not a job id or a job handle", key="depends_on")
    return check_job_id(job_id)


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
    rate_limit: str | None = None,
    burst: int | None = None,
    max_concurrency: int | None = None,
    rate_key: KeyFunction | None = None,
    concurrency_key: KeyFunction | None = None,
    retry_on: ExceptionTypes = (),
    no_retry_on: ExceptionTypes = (),
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
    rate_limit: str | None = None,
    burst: int | None = None,
    max_concurrency: int | None = None,
    rate_key: KeyFunction | None = None,
    concurrency_key: KeyFunction | None = None,
    retry_on: ExceptionTypes = (),
    no_retry_on: ExceptionTypes = (),
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
    rate_limit: str | None = None,
    burst: int | None = None,
    max_concurrency: int | None = None,
    rate_key: KeyFunction | None = None,
    concurrency_key: KeyFunction | None = None,
    retry_on: ExceptionTypes = (),
    no_retry_on: ExceptionTypes = (),
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
    :param rate_limit: at most this many starts per period across all workers, e.g. ``"100/m"``
        (units s, m, h, d; ``"30/5m"``); ``burst`` (or ``"100/m:20"``) lets that many start at
        once after an idle spell. Jobs over the rate wait in the queue without blocking others.
    :param max_concurrency: at most this many jobs of the function run at once, fleet-wide
    :param rate_key: ``(*args, **kwargs) -> key``: one rate limit per key (say, per tenant),
        computed from a job's arguments at enqueue; ``f.options(rate_key=...)`` overrides it
    :param concurrency_key: the same for ``max_concurrency``
    :param retry_on: exception classes a failed try is retried for (subclasses too); any other
        failure goes straight to the dead letters. Default: every exception.
    :param no_retry_on: exception classes never retried (subclasses too), even if ``retry_on``
        matches. arq's ``Retry(defer=...)`` raised by the job is honoured either way.
    """
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ConfigError(f"retries {retries!r} must be a whole number >= 0", key="retries")
    retry_on, no_retry_on = check_retry_filters(retry_on, no_retry_on)
    if burst is not None and rate_limit is None:
        raise ConfigError("burst= needs a rate_limit=", key="burst")
    rate = None if rate_limit is None else RateLimit.parse(rate_limit, burst)
    max_running = check_max_concurrency(max_concurrency)

    def decorate(f: Callable[Concatenate[Any, P], Awaitable[R]]) -> JobFunction[P, R]:
        opts = JobOptions(
            name=name or f.__name__,
            timeout=to_seconds(timeout, "timeout"),
            retries=retries,
            backoff=as_backoff(backoff),
            queue=check_queue(queue) if queue is not None else None,
            keep_result=to_seconds(keep_result, "keep_result"),
            executor=executor,
            rate_limit=rate,
            max_concurrency=max_running,
            rate_key=rate_key,
            concurrency_key=concurrency_key,
            retry_on=retry_on,
            no_retry_on=no_retry_on,
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
