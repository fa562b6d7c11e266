"""Job events: their wire form (JSON on ``asyncjobs:events:<id>``) and :class:`EventHub`, one
shared pub/sub connection per process that fans messages out to local subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Any

import orjson
from arq.utils import timestamp_ms
from redis.asyncio import Redis
from redis.exceptions import RedisError

from asyncjobs import keys
from asyncjobs.backoff import Retrying
from asyncjobs.records import JobRecord, JobStatus

logger = logging.getLogger(__name__)

CHECK_INTERVAL_S = 10.0  # the shared safety poll of job streams (see EventHub.check_jobs)

ENQUEUED = "enqueued"
STARTED = "started"
PROGRESS = "progress"
RETRYING = "retrying"
COMPLETE = "complete"
FAILED = "failed"
ABORTED = "aborted"
REQUEUED = "requeued"
TERMINAL = frozenset({COMPLETE, FAILED, ABORTED})
CHECK = "check"  # local only (never published): a job stream should look at its job again


async def next_event(queue: asyncio.Queue[dict[str, Any]], timeout: float | None) -> dict[str, Any] | None:
    """The next item of ``queue``, or ``None`` after ``timeout`` seconds (``None``: no limit).

    Built on ``asyncio.timeout``, not ``asyncio.wait_for``: on Python 3.11, ``wait_for`` loses
    a cancellation that arrives as the awaited item does, which left cancelled listeners
    waiting forever and hung shutdown.
    """
    try:
        async with asyncio.timeout(timeout):
            return await queue.get()
    except TimeoutError:
        return None


async def wait_set(ev: asyncio.Event, timeout: float) -> bool:
    """Wait up to ``timeout`` s for ``ev``; True if it is set (``asyncio.timeout``, not
    ``wait_for``: see :func:`next_event`)."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            await ev.wait()
    return ev.is_set()


def terminal_event(rec: JobRecord) -> dict[str, Any]:
    """The terminal event of a finished job, rebuilt from its record (``not_found`` if none)."""
    if rec.status is JobStatus.NOT_FOUND:
        return {"job_id": rec.job_id, "event": "not_found"}
    kind = {JobStatus.COMPLETE: COMPLETE, JobStatus.ABORTED: ABORTED}.get(rec.status, FAILED)
    return {"job_id": rec.job_id, "event": kind, "ts": rec.finish_ms, "function": rec.function}


def encode(job_id: str, event: str, **data: Any) -> bytes:
    return orjson.dumps({"job_id": job_id, "event": event, "ts": timestamp_ms(), **data}, default=str)


def decode(raw: bytes | str) -> dict[str, Any]:
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else {"event": "unknown", "data": value}


class EventHub:
    """Shares one Redis pub/sub connection among every local waiter.

    ``async with hub.subscribe(channel) as queue`` returns once Redis has confirmed the
    subscription, so nothing published after that is missed. The reader reconnects by itself;
    callers keep a polling fallback for the moments it is down.
    """

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._pubsub: Any = None
        self._queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._pattern_queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._confirmed: dict[str, asyncio.Event] = {}
        self._holds: dict[str, int] = {}
        self._job_queues: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self._job_ids: dict[str, str] = {}
        self._checker: asyncio.Task[None] | None = None
        self.check_interval = CHECK_INTERVAL_S
        self._pongs: list[asyncio.Future[None]] = []
        self._done_waiters: dict[str, set[asyncio.Event]] = {}
        self._done_subscribed = False
        self._reader: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.connected = False

    async def close(self) -> None:
        if self._checker is not None:
            self._checker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._checker
            self._checker = None
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        if self._pubsub is not None:
            with contextlib.suppress(Exception):
                await self._pubsub.aclose()
            self._pubsub = None
        self._done_subscribed = False

    def _ensure_reader(self) -> Any:
        if self._pubsub is None:
            self._pubsub = self._redis.pubsub()
        if self._reader is None or self._reader.done():
            self._reader = asyncio.get_running_loop().create_task(self._read(), name="asyncjobs-events")
        return self._pubsub

    @contextlib.asynccontextmanager
    async def subscribe(self, channel: str, *, pattern: bool = False) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        table = self._pattern_queues if pattern else self._queues
        table.setdefault(channel, set()).add(queue)
        try:
            async with self._held(channel, pattern=pattern):
                yield queue
        finally:
            _discard(table, channel, queue)

    @contextlib.asynccontextmanager
    async def job_events(self, job_id: str) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A queue of ``job_id``'s events, fed from the hub's one pattern subscription to
        ``asyncjobs:events:*`` (shared by every stream of the process and held while any is
        open), plus ``{"event": "check"}`` nudges from the one shared safety poll when the job
        may have ended unannounced (see :meth:`check_jobs`): the reader then looks again.

        Returns once the pattern subscription is confirmed, so nothing published after that is
        missed; the first stream of the process pays one round trip, the others none.
        """
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        channel = keys.events(job_id)
        self._job_ids[channel] = job_id
        self._job_queues.setdefault(channel, set()).add(queue)
        try:
            async with self._held(keys.EVENTS_PATTERN, pattern=True):
                self._ensure_checker()
                yield queue
        finally:
            if not _discard(self._job_queues, channel, queue):
                self._job_ids.pop(channel, None)

    def following(self, job_id: str) -> bool:
        """True while some local reader gets ``job_id``'s events (its subscription confirmed)."""
        confirmed = self._confirmed.get(keys.EVENTS_PATTERN)
        return keys.events(job_id) in self._job_queues and confirmed is not None and confirmed.is_set()

    @contextlib.asynccontextmanager
    async def _held(self, channel: str, *, pattern: bool) -> AsyncIterator[None]:
        """Hold the Redis subscription to ``channel`` (a pattern if ``pattern``): the first
        holder subscribes, the last one unsubscribes. Both happen under the lock, so an
        unsubscribe never overtakes a later subscribe on the wire."""
        async with self._lock:
            pubsub = self._ensure_reader()
            self._holds[channel] = self._holds.get(channel, 0) + 1
            if self._holds[channel] == 1:
                self._confirmed[channel] = asyncio.Event()
                try:
                    await (pubsub.psubscribe(channel) if pattern else pubsub.subscribe(channel))
                except BaseException:
                    self._holds.pop(channel, None)
                    raise
            confirmed = self._confirmed[channel]
        try:
            await wait_set(confirmed, 5)
            yield
        finally:
            async with self._lock:
                left = self._holds.pop(channel, 1) - 1
                if left:
                    self._holds[channel] = left
                else:
                    self._confirmed.pop(channel, None)
                    with contextlib.suppress(RedisError, OSError, RuntimeError):
                        await (pubsub.punsubscribe(channel) if pattern else pubsub.unsubscribe(channel))

    def _ensure_checker(self) -> None:
        if self._checker is None or self._checker.done():
            self._checker = asyncio.get_running_loop().create_task(self._check_loop(), name="asyncjobs-events-check")

    async def _check_loop(self) -> None:
        while self._job_queues:
            await asyncio.sleep(self.check_interval)
            await self.check_jobs()

    async def check_jobs(self) -> None:
        """The safety poll shared by every job stream: one pipelined ``EXISTS`` per followed
        job; a job whose key is gone (it ended, expired or never existed) gets a ``check``
        nudge. It catches what pub/sub cannot: events lost while the connection was down, and
        jobs that vanish without an announcement."""
        channels = list(self._job_queues)
        if not channels:
            return
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for channel in channels:
                    pipe.exists(keys.job(self._job_ids[channel]))
                found = await pipe.execute()
        except (RedisError, OSError, KeyError):
            return
        for channel, exists in zip(channels, found, strict=True):
            if not exists:
                self._nudge(channel)

    def _nudge(self, channel: str) -> None:
        for q in self._job_queues.get(channel, ()):
            q.put_nowait({"job_id": self._job_ids.get(channel), "event": CHECK})

    @contextlib.asynccontextmanager
    async def finished(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        """An event set when ``job_id`` ends (a message on ``asyncjobs:done`` names it). Clear
        it before each check of the job, then wait on it.

        The first call subscribes the hub to the done channel for good (one round trip); after
        that, waiting for a job costs no subscribe or unsubscribe at all.
        """
        ev = asyncio.Event()
        self._done_waiters.setdefault(job_id, set()).add(ev)
        try:
            await self._subscribe_done()
            yield ev
        finally:
            waiters = self._done_waiters.get(job_id)
            if waiters is not None:
                waiters.discard(ev)
                if not waiters:
                    del self._done_waiters[job_id]

    async def _subscribe_done(self) -> None:
        channel = keys.DONE_CHANNEL
        if not self._done_subscribed:
            async with self._lock:
                if not self._done_subscribed:
                    pubsub = self._ensure_reader()
                    self._confirmed[channel] = asyncio.Event()
                    await pubsub.subscribe(channel)
                    self._done_subscribed = True
        confirmed = self._confirmed.get(channel)
        if confirmed is not None:
            await wait_set(confirmed, 5)

    def _mark_done(self, raw: bytes) -> None:
        try:
            ids = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return
        for job_id in ids if isinstance(ids, list) else ():
            for ev in self._done_waiters.get(str(job_id), ()):
                ev.set()

    async def barrier(self, timeout: float = 2.0) -> None:
        """Return once every message published before this call has reached the local queues.

        A PING sent on the subscribed connection is answered after everything Redis queued for
        it before, so its pong marks the point. Best effort: gives up after ``timeout``."""
        if self._pubsub is None or self._pubsub.connection is None:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pongs.append(fut)
        try:
            async with asyncio.timeout(timeout):
                await self._pubsub.ping()
                await fut
        except (TimeoutError, RedisError, OSError):
            pass
        finally:
            if fut in self._pongs:
                self._pongs.remove(fut)

    async def _read(self) -> None:
        retrying = Retrying(logger, "event listener lost Redis ({reason}); reconnecting")
        while True:
            try:
                if self._pubsub.connection is None:  # nothing subscribed yet
                    await asyncio.sleep(0.01)
                    continue
                msg = await self._pubsub.get_message(timeout=1.0)
                if not self.connected:
                    self.connected = True
                    for channel in list(self._job_queues):  # events may have been lost meanwhile
                        self._nudge(channel)
                    for waiters in list(self._done_waiters.values()):  # and done messages: look again
                        for ev in waiters:
                            ev.set()
                retrying.succeeded()
                if msg is not None:
                    self._dispatch(msg)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as e:
                self.connected = False
                await retrying.pause(e)

    def _control(self, kind: str, channel: Any) -> None:
        """A pong (see :meth:`barrier`) or a subscription confirmed."""
        if kind == "pong":
            if self._pongs:
                fut = self._pongs.pop(0)
                if not fut.done():
                    fut.set_result(None)
            return
        event = self._confirmed.get(str(channel))
        if event is not None:
            event.set()

    def _dispatch(self, msg: dict[str, Any]) -> None:
        kind = msg.get("type")
        channel = msg.get("channel")
        channel = channel.decode() if isinstance(channel, bytes) else channel
        if kind in ("pong", "subscribe", "psubscribe"):
            self._control(kind, channel)
            return
        if not isinstance(channel, str):
            return
        if kind == "message" and channel == keys.DONE_CHANNEL:
            self._mark_done(msg["data"])
            return
        if kind == "message":
            targets: Iterable[asyncio.Queue[dict[str, Any]]] = self._queues.get(channel, ())
        elif kind == "pmessage":
            pattern = msg.get("pattern")
            pattern = pattern.decode() if isinstance(pattern, bytes) else str(pattern)
            targets = self._pattern_queues.get(pattern, ())
            if pattern == keys.EVENTS_PATTERN and channel in self._job_queues:
                targets = [*targets, *self._job_queues[channel]]
        else:
            return
        if not targets:
            return
        try:
            data = decode(msg["data"])
        except orjson.JSONDecodeError:
            data = {"event": "signal", "data": msg["data"]}
        data.setdefault("channel", channel)
        for q in targets:
            q.put_nowait(data)


def _discard(table: dict[str, set[Any]], name: str, item: Any) -> bool:
    """Remove ``item`` from ``table[name]`` (and the entry once empty); True if any are left."""
    items = table.get(name)
    if items is None:
        return False
    items.discard(item)
    if not items:
        del table[name]
    return bool(items)
