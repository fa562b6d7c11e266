"""The Python client: ``async with asyncjobs.connect(url) as client`` to enqueue jobs and
follow them through :class:`JobHandle`."""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast, overload

from arq.utils import timestamp_ms

from asyncjobs import deadletter, events, flow, keys, pausing, scripts
from asyncjobs.arq_records import aborted_result
from asyncjobs.connections import Broker, Encoded, connect_broker, new_job_id
from asyncjobs.errors import ClientClosed, ConfigError, DuplicateJob, JobAborted, JobFailed, JobNotFound
from asyncjobs.events import EventHub
from asyncjobs.lifecycle import JobEnd, Outcome
from asyncjobs.limits import derive_key
from asyncjobs.records import JobRecord, JobStatus, QueueStats
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
        job_id = o.job_id or new_job_id()
        queue = o.queue or c.default_queue or self.default_queue
        enc = self.redis.encode_enqueue(c.function, args, kwargs, o, job_id=job_id, queue_key=keys.queue(queue))
        if o.flow is not None:  # the window's key and how long it is held, for the flow script
            fk = o.flow.redis_key(c.function, args, kwargs)
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


class JobHandle(Generic[R]):
    """A job in Redis: ask its status, wait for its result, follow its events, abort it."""

    def __init__(self, client: Client, job_id: str, queue: str | None = None, *, admission: str = "created") -> None:
        self.client = client
        self.id = job_id
        self.queue = queue
        #: what the enqueue that returned this handle did: ``"created"`` (a new job; also any
        #: handle not from an enqueue), or, with a flow-control option, ``"deduplicated"``,
        #: ``"debounced"`` (the waiting job got the new arguments and start) or ``"throttled"``
        #: (dropped: this is the job holding the window)
        self.admission = admission

    def __repr__(self) -> str:
        return f"<JobHandle {self.id}>" if self.admission == "created" else f"<JobHandle {self.id} {self.admission}>"

    @property
    def deduplicated(self) -> bool:
        """The enqueue found this job holding its dedupe window and created none."""
        return self.admission == "deduplicated"

    @property
    def debounced(self) -> bool:
        """The enqueue replaced this waiting job's arguments and pushed its start back."""
        return self.admission == "debounced"

    @property
    def throttled(self) -> bool:
        """The enqueue was dropped: this job holds the throttle window."""
        return self.admission == "throttled"

    @property
    def _queues(self) -> list[str]:
        return [self.queue] if self.queue else self.client.queues

    async def info(self) -> JobRecord:
        """Everything known about the job, in one round trip (:meth:`JobStore.get`)."""
        return await self.client.store.get(self.id, self._queues)

    async def status(self) -> JobStatus:
        return (await self.info()).status

    async def result(self, timeout: float | None = None) -> R:
        """Wait for the job to finish and return its result.

        Event-driven (pub/sub) with a polling fallback, so it also sees jobs finished by a
        plain arq worker. Raises :class:`JobFailed` (:class:`JobAborted`) if the job failed,
        :class:`JobNotFound` if there is no such job, ``TimeoutError`` after ``timeout`` s.
        """
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with self.client.hub.finished(self.id) as done:
            while True:
                done.clear()
                rec = await self.info()
                if rec.status.finished:
                    return cast(R, rec.outcome())
                if rec.status is JobStatus.NOT_FOUND:
                    raise JobNotFound(self.id)
                wait = self.client.poll_interval
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                    if wait <= 0:
                        raise TimeoutError(
                            f"job {self.id} did not finish within {timeout}s (status {rec.status.value})"
                        )
                await events.wait_set(done, wait)

    async def events(self, *, timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield the job's events (started, progress, retrying, ...) as they happen, ending with
        its terminal event (complete, failed or aborted). A finished job yields just that; a
        job that does not exist yields ``{"event": "not_found"}``.

        Events come from the client's one shared subscription (:meth:`EventHub.job_events`):
        an idle stream costs Redis nothing but its share of one slow safety poll."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with self.client.hub.job_events(self.id) as queue:
            rec = await self.info()
            if rec.status.finished or rec.status is JobStatus.NOT_FOUND:
                async for early in self._ended_meanwhile(queue, rec):
                    yield early
                return
            started_try = None
            if (
                rec.status is JobStatus.IN_PROGRESS
                and rec.start_ms is not None
                and not await self._started_since(queue)
            ):
                # the engine publishes "started" as it claims, often before anyone subscribed
                started_try = rec.tries
                yield _started_event(rec)
            while True:
                wait = None if deadline is None else deadline - loop.time()
                event = None if wait is not None and wait <= 0 else await events.next_event(queue, wait)
                if event is None:
                    raise TimeoutError(f"job {self.id} did not finish within {timeout}s")
                kind = event.get("event")
                if kind == events.CHECK:  # the shared safety poll says the job may have ended
                    rec = await self.info()
                    if rec.status.finished or rec.status is JobStatus.NOT_FOUND:
                        yield events.terminal_event(rec)
                        return
                    continue
                if kind == events.STARTED and event.get("try") == started_try:
                    continue  # already yielded from the job's state
                yield event
                if kind in events.TERMINAL:
                    return

    async def _started_since(self, queue: asyncio.Queue[dict[str, Any]]) -> bool:
        """Whether a try started after the subscription: its events, already queued, tell the
        story in order, and a ``started`` event rebuilt from a record read later would come
        before the events of the tries that record has already left behind."""
        await self.client.hub.barrier()
        early = []
        while not queue.empty():
            early.append(queue.get_nowait())
        for event in early:  # back in their order, before anything else can arrive
            queue.put_nowait(event)
        return any(event.get("event") == events.STARTED for event in early)

    async def _ended_meanwhile(
        self, queue: asyncio.Queue[dict[str, Any]], rec: JobRecord
    ) -> AsyncIterator[dict[str, Any]]:
        """The job ended (or never existed): it may have run while we subscribed, so yield what
        was published meanwhile, then its terminal event rebuilt from the record."""
        await self.client.hub.barrier()
        while not queue.empty():
            early = queue.get_nowait()
            if early.get("event") in events.TERMINAL:
                break
            if early.get("event") != events.CHECK:
                yield early
        yield events.terminal_event(rec)

    async def abort(self, *, timeout: float = 10.0) -> bool:
        """Abort the job: a queued or deferred job is removed at once; a running one is
        cancelled by its worker. True if the job ended aborted within ``timeout``."""
        r = self.client.redis
        rec = await self.info()
        if rec.status is JobStatus.WAITING:  # a workflow node: cancelled before it is queued
            from asyncjobs import workflows

            if await workflows.cancel_waiting(self.client, self.id):
                return True
            rec = await self.info()
        if rec.status.finished or rec.status is JobStatus.NOT_FOUND:
            return rec.status is JobStatus.ABORTED
        if rec.status in (JobStatus.QUEUED, JobStatus.DEFERRED):
            outcome = await self._abort_queued(rec)
            if outcome == b"aborted":
                return True
        async with r.pipeline(transaction=False) as pipe:
            pipe.zadd(keys.ARQ_ABORT, {self.id: timestamp_ms()})
            pipe.publish(keys.ABORT_CHANNEL, self.id)
            await pipe.execute()
        try:
            await self.result(timeout=timeout)
        except JobAborted:
            return True
        except (JobFailed, TimeoutError):
            return False
        return False

    async def _abort_queued(self, rec: JobRecord) -> bytes:
        queue_key = keys.queue(rec.queue or self.client.default_queue)
        payload = aborted_result(rec, queue_key, timestamp_ms(), self.client.redis.job_serializer)
        end = JobEnd(self.id, queue_key, Outcome.ABORTED, rec.function)
        outcome = await self.client._abort_script(
            keys=[], args=[self.id, end.queue_key, end.stats_key, payload, 3_600_000, end.event()]
        )
        return cast(bytes, outcome)


def _started_event(rec: JobRecord) -> dict[str, Any]:
    return {
        "job_id": rec.job_id,
        "event": events.STARTED,
        "ts": rec.start_ms,
        "started_ms": rec.start_ms,
        "try": rec.tries,
        "function": rec.function,
    }


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
