"""The Python client: ``async with asyncjobs.connect(url) as client`` to enqueue jobs and
follow them through :class:`JobHandle`."""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar, overload

from asyncjobs import deadletter, flow, keys, pausing, redis_url, scripts
from asyncjobs.cluster import check_cluster_use
from asyncjobs.connections import Broker, Encoded, connect_broker, job_id_for
from asyncjobs.errors import ClientClosed, ConfigError, DuplicateJob, JobFailed
from asyncjobs.events import EventHub
from asyncjobs.handles import JobHandle as JobHandle
from asyncjobs.limits import derive_key
from asyncjobs.records import QueueStats
from asyncjobs.registry import ID_RE as ID_RE
from asyncjobs.registry import QUEUE_RE as QUEUE_RE
from asyncjobs.registry import EnqueueOptions, JobFunction, P, R, Registry, to_seconds
from asyncjobs.registry import check_job_id as check_job_id
from asyncjobs.registry import check_new_job_id as check_new_job_id
from asyncjobs.registry import check_queue as check_queue
from asyncjobs.serving import ServedQueues
from asyncjobs.store import JobStore

if TYPE_CHECKING:
    from asyncjobs.canvas import Canvas
    from asyncjobs.workflows import Workflow

logger = logging.getLogger(__name__)

T = TypeVar("T")


class _State(enum.Enum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


@dataclass
class JobCall:
    """One job to enqueue: function name, arguments and placement (see :meth:`Client.enqueue_many`)."""

    function: str
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    options: EnqueueOptions = field(default_factory=EnqueueOptions)
    default_queue: str | None = None
    #: the arguments were already checked and encoded against the function's signature
    checked: bool = False


def call(function: JobFunction[P, Any] | str, /, *args: Any, **kwargs: Any) -> JobCall:
    """A :class:`JobCall` for ``function(*args, **kwargs)``, checked against its signature and
    type hints (rich values such as pydantic models encoded). A name is checked by a client
    that has a registry; a function this process does not know is sent unchecked."""
    if isinstance(function, JobFunction):
        a, k = function.encode_arguments(args, kwargs)
        options = with_limit_keys(function, args, kwargs, function.enqueue_options)
        return JobCall(function.name, a, k, options, function.opts.queue, checked=True)
    return JobCall(function, args, kwargs)


def with_limit_keys(
    function: JobFunction[Any, Any], args: Sequence[Any], kwargs: dict[str, Any], options: EnqueueOptions
) -> EnqueueOptions:
    """``options`` with the keys of the function's per-key limits, computed by its key
    functions from the job's arguments unless the enqueue gave them."""
    o = function.opts
    if o.rate_key is None and o.concurrency_key is None:
        return options
    rate = derive_key(o.rate_key, options.rate_key, args, kwargs, "rate_key")
    conc = derive_key(o.concurrency_key, options.concurrency_key, args, kwargs, "concurrency_key")
    return replace(options, rate_key=rate, concurrency_key=conc)


class Client:
    """Enqueues jobs and inspects queues. Create with :func:`connect`."""

    def __init__(
        self,
        url: str,
        *,
        registry: Registry | None = None,
        queues: Sequence[str] = (keys.DEFAULT_QUEUE,),
        default_queue: str = keys.DEFAULT_QUEUE,
        poll_interval: float = 0.5,
        broker: Broker | None = None,
        job_expiry: float | None = None,
        durable: bool | float = False,
    ) -> None:
        self.url = url
        self.durable = durable_seconds(durable)
        self.registry = registry
        self.default_queue = check_queue(default_queue)
        self.queues = [check_queue(q) for q in dict.fromkeys([default_queue, *queues])]
        self.poll_interval = poll_interval
        self.job_expiry = job_expiry
        self._broker = broker
        self._owns_broker = broker is None
        self._hub: EventHub | None = None
        self._store: JobStore | None = None
        self._state = _State.NEW
        self._abort_script: Any = None
        self._served = ServedQueues()

    # --- lifecycle ------------------------------------------------------------------------
    async def open(self) -> Client:
        if self._state is _State.CLOSED:
            raise ClientClosed("this client was closed; create a new one with asyncjobs.connect()")
        if self._state is _State.OPEN:
            return self
        if self._broker is None:
            if redis_url.parse(self.url).cluster:
                check_cluster_use(self.queues, durable=self.durable)
            self._broker = await connect_broker(self.url, job_expiry=self.job_expiry, durable=self.durable)
        self._hub = EventHub(self._broker)
        self._store = JobStore(self._broker, hub=self._hub, queues=self.queues)
        self._abort_script = self._broker.register_script(scripts.ABORT_QUEUED)
        self._state = _State.OPEN
        return self

    async def close(self) -> None:
        if self._state is not _State.OPEN:
            self._state = _State.CLOSED
            return
        self._state = _State.CLOSED
        if self._hub is not None:
            await self._hub.close()
        if self._owns_broker and self._broker is not None:
            await self._broker.aclose(close_connection_pool=True)

    async def __aenter__(self) -> Client:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def redis(self) -> Broker:
        if self._state is not _State.OPEN or self._broker is None:
            raise ClientClosed("the client is not open: use 'async with asyncjobs.connect(url) as client'")
        return self._broker

    @property
    def hub(self) -> EventHub:
        self.redis  # noqa: B018 - state check
        assert self._hub is not None
        return self._hub

    @property
    def store(self) -> JobStore:
        """The :class:`JobStore` every read of this client goes through."""
        self.redis  # noqa: B018 - state check
        assert self._store is not None
        return self._store

    # --- enqueue --------------------------------------------------------------------------
    @overload
    async def enqueue(self, function: JobFunction[P, R], /, *args: P.args, **kwargs: P.kwargs) -> JobHandle[R]: ...

    @overload
    async def enqueue(self, function: str, /, *args: Any, **kwargs: Any) -> JobHandle[Any]: ...

    async def enqueue(self, function: Any, /, *args: Any, **kwargs: Any) -> JobHandle[Any]:
        """Enqueue ``function(*args, **kwargs)``. Placement options come from
        ``function.options(job_id=..., queue=..., defer_by=..., defer_until=..., priority=...)``;
        for a function known by name only, use :meth:`enqueue_call`.

        Arguments are checked against the function's signature and type hints
        (:class:`InvalidArguments` naming the parameter), and rich values (pydantic models,
        dataclasses, datetimes, UUIDs, decimals) are encoded; the worker hands them to the job
        as the annotated types. A function given by name is checked only when the client has a
        registry that knows it; otherwise (say, a job served by another code base) the
        arguments are sent as given. Raises :class:`DuplicateJob` if the job id is taken.
        """
        if isinstance(function, JobFunction) and function.depends_on:
            from asyncjobs import workflows

            return await workflows.enqueue_dependent(self, function, args, kwargs)
        return (await self.enqueue_placed(call(function, *args, **kwargs)))[0]

    async def enqueue_workflow(
        self, canvas: Canvas, *, workflow_id: str | None = None, expires: float | None = None
    ) -> Workflow:
        """Create a workflow (a :func:`~asyncjobs.chain`, :func:`~asyncjobs.group`,
        :func:`~asyncjobs.chord` or signature) and start it. Every node's arguments are checked
        first (:class:`InvalidWorkflow` naming the node and parameter), as are its
        dependencies (no cycles, no unknown jobs). ``expires``: seconds the workflow may take
        and its state is kept (default: the client's ``job_expiry``, else one day)."""
        from asyncjobs import workflows

        return await workflows.create(self, canvas, workflow_id=workflow_id, expires=expires)

    def workflow(self, workflow_id: str) -> Workflow:
        """A handle on an existing workflow by id."""
        from asyncjobs.workflows import Workflow

        return Workflow(self, check_job_id(workflow_id))

    async def enqueue_call(
        self,
        function: str,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        job_id: str | None = None,
        queue: str | None = None,
        defer_by: float | None = None,
        defer_until: datetime | None = None,
        priority: int = 0,
        dedupe_key: str | None = None,
        dedupe_for: float | None = None,
        debounce: float | None = None,
        throttle: float | None = None,
        throttle_key: str | None = None,
    ) -> JobHandle[Any]:
        """Enqueue by name with explicit arguments and options (what the CLI and HTTP API use).
        ``priority`` (0-9, higher runs first) orders jobs that are due now: not with ``defer_*``.
        Flow control as in :meth:`asyncjobs.JobFunction.options`."""
        flow_control = flow.flow_options(
            dedupe_key=dedupe_key,
            dedupe_for=dedupe_for,
            debounce=debounce,
            throttle=throttle,
            throttle_key=throttle_key,
        )
        options = EnqueueOptions(job_id, queue, to_seconds(defer_by, "defer_by"), defer_until, priority, flow_control)
        return (await self.enqueue_placed(JobCall(function, args, kwargs or {}, options)))[0]

    async def enqueue_many(self, calls: Iterable[JobCall], *, batch_size: int = 1000) -> list[JobHandle[Any] | None]:
        """Enqueue many jobs (build each with :func:`asyncjobs.call`), one round trip per batch.
        The result has a handle per call, ``None`` where the job id was taken."""
        out: list[JobHandle[Any] | None] = []
        batch: list[JobCall] = []
        for c in calls:
            batch.append(c)
            if len(batch) >= batch_size:
                out.extend(await self._enqueue_calls(batch, strict=False))
                batch = []
        if batch:
            out.extend(await self._enqueue_calls(batch, strict=False))
        return out

    def _prepare(self, c: JobCall) -> tuple[str, str, Encoded]:
        """The call encoded for the enqueue script; its options were checked when built."""
        args, kwargs = c.args, c.kwargs
        o = c.options
        if self.registry is not None and not c.checked:
            function = self.registry.get(c.function)
            args, kwargs = function.encode_arguments(args, kwargs)
            o = with_limit_keys(function, c.args, c.kwargs, o)
        queue = o.queue or c.default_queue or self.default_queue
        queue_key = keys.queue(queue)
        job_id = job_id_for(queue_key, o.job_id)
        enc = self.redis.encode_enqueue(c.function, args, kwargs, o, job_id=job_id, queue_key=queue_key)
        if o.flow is not None:  # the window's key and how long it is held, for the flow script
            fk = o.flow.redis_key(c.function, args, kwargs, keys.tag_of(queue_key))
            enc = enc._replace(keys=[*enc.keys, fk], argv=[*enc.argv, *o.flow.argv(enc.argv[3])])
        return job_id, queue, enc

    async def enqueue_placed(self, c: JobCall) -> tuple[JobHandle[Any], Encoded]:
        """Enqueue one :class:`JobCall` in one EVALSHA round trip (:class:`DuplicateJob` if its
        id is taken), with how it was placed: when it was encoded and when it runs. With a
        flow-control option the handle may be the job holding the window (see
        :attr:`JobHandle.admission`)."""
        job_id, queue, enc = self._prepare(c)
        if c.options.flow is not None:
            handle = (await self._enqueue_flow([(job_id, queue, enc)]))[0]
            if handle is None:
                raise DuplicateJob(job_id)
        elif await self.redis.evalsha_enqueue(enc.keys, enc.argv):
            handle = JobHandle(self, job_id, queue)
        else:
            raise DuplicateJob(job_id)
        await self._served.check(self.redis, queue)
        return handle, enc

    async def _enqueue_calls(self, calls: list[JobCall], *, strict: bool) -> list[Any]:
        prepared = [self._prepare(c) for c in calls]
        flowing = [i for i, c in enumerate(calls) if c.options.flow is not None]
        plain = [p for c, p in zip(calls, prepared, strict=True) if c.options.flow is None]
        created = await self.redis.evalsha_enqueue_many([(e.keys, e.argv) for _, _, e in plain]) if plain else []
        out: list[Any] = [JobHandle(self, i, q) if ok else None for (i, q, _), ok in zip(plain, created, strict=True)]
        if flowing:
            for i, handle in zip(flowing, await self._enqueue_flow([prepared[i] for i in flowing]), strict=True):
                out.insert(i, handle)
        for queue in {q for _, q, _ in prepared}:
            await self._served.check(self.redis, queue)
        if strict and None in out:
            raise DuplicateJob(prepared[out.index(None)][0])
        return out

    async def _enqueue_flow(self, prepared: list[tuple[str, str, Encoded]]) -> list[JobHandle[Any] | None]:
        """Enqueue jobs with a flow-control option (one round trip): a handle on the new job, on
        the job holding the window (dedupe, throttle: on whatever queue it is; debounce: this
        one), or ``None`` where the job id was taken."""
        answers = await flow.run(self.redis, [(e.keys, e.argv) for _, _, e in prepared])
        out: list[JobHandle[Any] | None] = []
        for (_, queue, _), (code, job_id) in zip(prepared, answers, strict=True):
            if code == flow.TAKEN:
                out.append(None)
            else:
                same_queue = code in (flow.CREATED, flow.DEBOUNCED)
                out.append(JobHandle(self, job_id, queue if same_queue else None, admission=flow.ADMISSION[code]))
        return out

    # --- inspection -----------------------------------------------------------------------
    def job(self, job_id: str, queue: str | None = None) -> JobHandle[Any]:
        """A handle on an existing job by id."""
        return JobHandle(self, check_job_id(job_id), queue)

    async def queue_stats(self, queues: Sequence[str] | None = None) -> list[QueueStats]:
        """Counts per queue (default: the client's queues) and when the longest-waiting due job
        was due (priority scores decoded)."""
        return await self.store.queue_stats(queues or self.queues)

    async def dead_letters(self, *, offset: int = 0, limit: int = 100) -> tuple[int, list[deadletter.DeadLetter]]:
        return await self.store.dead_letters(offset=offset, limit=limit)

    async def retry_dead(self, job_id: str) -> JobHandle[Any]:
        """Re-enqueue a dead-lettered job under the same id (its old result is dropped)."""
        entry = await self.store.dead_letter(job_id)
        if entry.raw is not None:
            raise JobFailed(
                job_id, entry.function, "SerializationError", "its payload cannot be decoded, so it cannot be retried"
            )
        # taken before the enqueue: a retry that fails again at once is dead-lettered anew
        entry, blob = await self.store.take_dead(job_id)
        try:
            options = EnqueueOptions(job_id=job_id, queue=entry.queue, internal=True)
            return (await self.enqueue_placed(JobCall(entry.function, entry.args, entry.kwargs, options)))[0]
        except BaseException:
            await self.store.put_back_dead(job_id, blob)
            raise

    async def purge_dead(self) -> int:
        return await self.store.purge_dead()

    # --- flow control (asyncjobs.pausing) ------------------------------------------------
    async def pause(self, *, queue: str | None = None, function: str | None = None) -> None:
        """Pause a queue (workers do not read it) or a function (its jobs are parked); jobs
        stay queued and visible. Give one of ``queue`` and ``function``."""
        if (queue is None) == (function is None):
            raise ConfigError("pause: give either queue= or function=")
        await (pausing.pause_queue(self.redis, queue) if queue else pausing.pause_function(self.redis, function or ""))

    async def resume(self, *, queue: str | None = None, function: str | None = None) -> None:
        """Undo :meth:`pause`: workers start the jobs at once."""
        if (queue is None) == (function is None):
            raise ConfigError("resume: give either queue= or function=")
        if queue:
            await pausing.resume_queue(self.redis, queue)
        else:
            await pausing.resume_function(self.redis, function or "")

    async def limits(self) -> list[pausing.LimitState]:
        """Each limited or paused function: its limits and their use now."""
        return await pausing.limit_states(self.redis)

    async def workers(self) -> list[dict[str, Any]]:
        """The live workers (seen in the last minute): id, host, pid, queues, concurrency, ..."""
        return await self.store.workers()

    async def unserved(self, queue: str) -> str | None:
        """A warning if no live worker serves ``queue`` (a job there would wait for ever), else
        ``None``. Read at most once a minute per queue; enqueueing checks it too, logging the
        warning once per queue."""
        return await self._served.check(self.redis, check_queue(queue))


def durable_seconds(durable: bool | float) -> float:
    """Seconds a durable enqueue waits for a replica: ``True`` 1 s, ``False`` 0 (off)."""
    seconds = (1.0 if durable else 0.0) if isinstance(durable, bool) else float(durable)
    if seconds < 0:
        raise ConfigError(f"durable must be True, False or seconds >= 0, got {durable!r}", key="durable")
    return seconds


def connect(
    url: str = "redis://localhost:6379/0",
    *,
    registry: Registry | Iterable[JobFunction[Any, Any]] | None = None,
    queues: Sequence[str] = (keys.DEFAULT_QUEUE,),
    default_queue: str = keys.DEFAULT_QUEUE,
    poll_interval: float = 0.5,
    job_expiry: float | None = None,
    durable: bool | float = False,
) -> Client:
    """A :class:`Client` for ``url``; use as ``async with connect(url) as client``.

    With ``registry`` (the deployment's functions), enqueue by name is checked before
    anything is written. ``queues`` are the queues lookups by id read first (a job on another
    queue is found too, at one more round trip). ``job_expiry``:
    seconds a due job may wait for a worker before it expires (default: never; use
    ``Settings.job_expiry``); an expired job is dead-lettered with reason "job expired".
    ``durable``: an enqueue returns once a replica has the job too (``WAIT 1``), so a Sentinel
    failover cannot lose it; ``True`` waits up to 1 s, a number that many seconds, and
    :class:`NotReplicated` is raised if no replica confirms in time.
    """
    reg = registry if registry is None or isinstance(registry, Registry) else Registry(registry)
    return Client(
        url,
        registry=reg,
        queues=queues,
        default_queue=default_queue,
        poll_interval=poll_interval,
        job_expiry=job_expiry,
        durable=durable,
    )
