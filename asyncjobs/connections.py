"""Connecting to Redis: URL validation, the embedded in-memory broker, and :class:`Broker`,
arq's ``ArqRedis`` with a one-round-trip enqueue that wakes idle workers."""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, NamedTuple, TypeVar, cast

from arq.connections import ArqRedis
from arq.jobs import Job
from arq.utils import to_ms
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import SentinelConnectionPool
from redis.backoff import AbstractBackoff
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    NoScriptError,
    RedisError,
    ResponseError,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asyncjobs import keys, memory, redis_url, scripts
from asyncjobs.backoff import RECONNECT, WARN_EVERY_S, Every, Retrying
from asyncjobs.enqueue_line import EnqueueLine, LineFailed
from asyncjobs.errors import BrokerUnavailable, ConfigError, NotReplicated
from asyncjobs.registry import EnqueueOptions
from asyncjobs.serialization import deserialize, serialize

logger = logging.getLogger(__name__)

T = TypeVar("T")
#: one warning every few seconds for all the connections that lost Redis (one outage, one line)
_LOST_WARNINGS = Every(WARN_EVERY_S)


#: errors of a Redis (or cluster node) that is away for now, which a worker outlives: the
#: standalone broker reconnects by itself, a cluster client raises them once its own retries
#: are spent (a node down, the cluster re-electing)
UNAVAILABLE: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    ClusterDownError,
    TryAgainError,
    MasterDownError,
    SlotNotCoveredError,
)


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and messages."""
    return redis_url.mask(url)


def validate_url(url: str) -> str:
    """Return ``url`` if it is a usable Redis URL, else raise :class:`ConfigError` saying why
    (:func:`asyncjobs.redis_url.parse` knows every form and parameter)."""
    redis_url.parse(url)
    return url


class Encoded(NamedTuple):
    """One job's enqueue, ready to send: the script's KEYS and ARGV, when it was encoded and
    when it runs (the run-at time, not the queue score: a priority's score is earlier)."""

    keys: list[str]
    argv: list[Any]
    now_ms: int
    run_at_ms: int


class BrokerMixin:
    """What asyncjobs adds to a Redis client: a single-round-trip enqueue (the methods of
    :class:`Broker`, and of the cluster mode's ``ClusterBroker``)."""

    url: str = ""
    #: seconds an enqueue waits for a replica to confirm it (``WAIT 1``); 0: it does not wait
    durable: float = 0.0
    _line: EnqueueLine | None = None
    default_queue_name: str
    expires_extra_ms: int
    job_deserializer: Any
    # the Redis client's own methods
    register_script: Any
    pipeline: Any
    evalsha: Any
    script_load: Any
    mget: Any

    async def enqueue_job(
        self,
        function: str,
        *args: Any,
        _job_id: str | None = None,
        _queue_name: str | None = None,
        _defer_until: datetime | None = None,
        _defer_by: float | int | timedelta | None = None,
        _expires: float | int | None = None,
        _job_try: int | None = None,
        **kwargs: Any,
    ) -> Job | None:
        queue_key = _queue_name or self.default_queue_name
        # arq's API takes any id (its cron scheduler uses the ones reserved for it) and any
        # deferral, a negative defer_by meaning now, as in arq
        defer_by = _defer_by.total_seconds() if isinstance(_defer_by, timedelta) else _defer_by
        options = EnqueueOptions(
            _job_id, None, None if defer_by is None else max(float(defer_by), 0.0), _defer_until, internal=True
        )
        job_id = job_id_for(queue_key, _job_id)
        enc = self.encode_enqueue(
            function, args, kwargs, options, job_id=job_id, queue_key=queue_key, expires=_expires, job_try=_job_try
        )
        if not await self.evalsha_enqueue(enc.keys, enc.argv):
            return None
        return Job(job_id, redis=cast(ArqRedis, self), _queue_name=queue_key, _deserializer=self.job_deserializer)

    def encode_enqueue(
        self,
        function: str,
        args: Any,
        kwargs: dict[str, Any],
        options: EnqueueOptions,
        *,
        job_id: str,
        queue_key: str,
        expires: float | int | None = None,
        job_try: int | None = None,
    ) -> Encoded:
        """KEYS and ARGV of the enqueue script for one job (no I/O), placed as ``options`` (checked
        when they were built) score it at this moment; ``job_id`` and ``queue_key`` resolved."""
        now = round(time.time() * 1000)  # arq's timestamp_ms() (rounded, not floored), inline
        score, run_at = options.score(now)
        ttl = to_ms(expires) if expires else (run_at - now + self.expires_extra_ms if self.expires_extra_ms else 0)
        queue_name, wake_channel = _queue_names(queue_key)
        # arq's job record, without what a reader fills in: the try (None, not yet tried; see
        # serialization.deserialize) and the queue name for the default queue (the record's
        # reader finds the queue a job is in): 13 bytes less per job
        job: dict[str, Any] = {"f": function, "a": list(args), "k": kwargs, "et": now}
        if job_try is not None:
            job["t"] = job_try
        if queue_name != keys.DEFAULT_QUEUE:
            job["q"] = queue_name
        if options.rate_key is not None:  # per-key limits: read by the claim (asyncjobs.limits)
            job["rk"] = options.rate_key
        if options.concurrency_key is not None:
            job["ck"] = options.concurrency_key
        payload = serialize(job)
        return Encoded([queue_key], [job_id, payload, score, ttl, wake_channel], now, run_at)

    async def evalsha_enqueue(self, key_list: list[str], argv: list[Any]) -> bool:
        """Run the enqueue script for one job: True if it was enqueued, False if its id is taken."""
        return (await self.evalsha_enqueue_many([(key_list, argv)]))[0]

    async def evalsha_enqueue_many(self, calls: list[tuple[list[str], list[Any]]]) -> list[bool]:
        """Run the enqueue script once per (keys, argv) in one round trip: on the
        :class:`EnqueueLine` when it is free, else pipelined through the pool. A script Redis
        does not know yet (a restart, SCRIPT FLUSH) is loaded and the refused calls sent again."""
        if self.durable:
            return await self._evalsha_durable(calls)
        line = self._line
        if line is None or line.busy:
            return await self._evalsha_pool(calls)
        script = self._enqueue_script
        try:
            replies = await line.evalsha(script.sha, calls)
            unknown = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
            if unknown:
                script.sha = await self.script_load(script.script)
                again = await line.evalsha(script.sha, [calls[i] for i in unknown])
                for i, r in zip(unknown, again, strict=True):
                    replies[i] = r
        except LineFailed:
            return await self._after_line_failed(calls)
        for r in replies:
            if isinstance(r, Exception):
                raise r
        return [bool(r) for r in replies]

    async def _after_line_failed(self, calls: list[tuple[list[str], list[Any]]]) -> list[bool]:
        """Send ``calls`` again through the pool (which reconnects). The failed try may have
        reached Redis: a job found there with this very payload is this one, not a duplicate."""
        return await self._taken_by_this(calls, await self._evalsha_pool(calls))

    async def _taken_by_this(self, calls: list[tuple[list[str], list[Any]]], created: list[bool]) -> list[bool]:
        """``created``, with a refused call counted as created when the job under its id has
        its very payload (an earlier try of this call reached Redis before the reply was lost)."""
        taken = [i for i, ok in enumerate(created) if not ok]
        if taken:
            stored = await self.mget([keys.job(calls[i][1][0]) for i in taken])
            for i, payload in zip(taken, stored, strict=True):
                created[i] = payload is not None and payload == calls[i][1][1]
        return created

    async def _evalsha_durable(self, calls: list[tuple[list[str], list[Any]]]) -> list[bool]:
        """The enqueue scripts, then ``WAIT 1`` on the same connection, in one round trip: the
        jobs are acknowledged once a replica has them too, so a failover cannot lose them
        (:class:`NotReplicated` if none confirms within :attr:`durable` seconds)."""
        script = self._enqueue_script
        async with self.pipeline(transaction=False) as pipe:
            for key_list, argv in calls:
                await script(keys=key_list, args=argv, client=pipe)  # loads the script if needed
            pipe.execute_command("WAIT", 1, max(1, int(self.durable * 1000)))
            *replies, replicas = await pipe.execute()
        if int(replicas) < 1:
            raise NotReplicated(mask_url(self.url), self.durable, [argv[0] for _, argv in calls])
        return await self._taken_by_this(calls, [bool(r) for r in replies])

    async def _evalsha_pool(self, calls: list[tuple[list[str], list[Any]]]) -> list[bool]:
        script = self._enqueue_script
        if len(calls) == 1:
            (key_list, argv), evalsha = calls[0], cast("Callable[..., Awaitable[Any]]", self.evalsha)
            try:
                return [bool(await evalsha(script.sha, len(key_list), *key_list, *argv))]
            except NoScriptError:
                script.sha = await self.script_load(script.script)
                return [bool(await evalsha(script.sha, len(key_list), *key_list, *argv))]
        for attempt in (1, 2):
            async with self.pipeline(transaction=False) as pipe:
                for key_list, argv in calls:  # (a cluster pipeline has no evalsha method)
                    pipe.execute_command("EVALSHA", script.sha, len(key_list), *key_list, *argv)
                replies = await pipe.execute(raise_on_error=False)
            if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
                script.sha = await self.script_load(script.script)  # (a cluster loads it on every node)
                continue
            break
        for r in replies:
            if isinstance(r, Exception):
                raise r
        return [bool(r) for r in replies]

    @property
    def _enqueue_script(self) -> Any:
        script = getattr(self, "_asyncjobs_enqueue", None)
        if script is None:
            script = self._asyncjobs_enqueue = self.register_script(scripts.ENQUEUE)
        return script


class Broker(BrokerMixin, ArqRedis):  # type: ignore[misc]  # (enqueue_job: arq's signature, as arq calls it)
    """arq's Redis client, with asyncjobs' serializer and a single-round-trip enqueue.

    ``enqueue_job`` keeps arq's signature, so arq's cron and code written for arq use it too.
    """

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        if self._line is not None:
            await self._line.close()
        await super().aclose(close_connection_pool)
        if close_connection_pool:
            await redis_url.close_sentinels(self.connection_pool)


@functools.lru_cache(maxsize=1024)
def _queue_names(queue_key: str) -> tuple[str, str]:
    """The queue name behind ``queue_key`` and its wake channel (cached: asked on every enqueue)."""
    name = keys.queue_name_of(queue_key)
    return name, keys.wake(name)


# ids in base 64 with the digits in ASCII order ("-", 0-9, A-Z, "_", a-z), so that sorting ids
# as strings sorts them by value; base64's own alphabet is translated into it
_B64 = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_ORDERED = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
_TO_ORDERED = bytes.maketrans(_B64, _ORDERED)
ID_LENGTH = 22
_ID_MARK = 1 << 131  # the top bit: the first character is never "-" (an id is never read as a CLI option)
_id_clock = [0, 0]  # last id's ms and counter, so ids from one process keep creation order


def new_job_id() -> str:
    """A new job id: 22 characters of base 64 (``-0-9A-Z_a-z``, in ASCII order), 132 bits laid
    out like a UUIDv7 (RFC 9562): 48 bits of Unix time in ms, a 12-bit counter (method 1: it
    starts at a random value each millisecond and keeps ids from this process increasing within
    one), then 72 random bits; the top bit is set, so ids start with a letter (``V`` until 2109).
    arq's queue orders jobs due in the same millisecond by id, so this keeps them first in, first
    out, and lists them newest first on the dashboard.

    22 characters, not a UUID's 32 hex digits: Redis keeps a string shorter than 32 bytes with a
    one-byte header, so the id in the queue and the ``arq:job:<id>`` key name each fit an
    allocation 16 bytes smaller (32 B, not 48 B) per queued job."""
    ms = time.time_ns() // 1_000_000
    clock = _id_clock
    if ms > clock[0]:
        clock[0], clock[1] = ms, int.from_bytes(os.urandom(1)) << 2  # room for >= 3,000 more
    else:  # same millisecond, or the clock stepped back: count on from the last id
        clock[1] += 1
        if clock[1] > 0xFFF:
            clock[0], clock[1] = clock[0] + 1, 0
    value = _ID_MARK | clock[0] << 84 | clock[1] << 72 | int.from_bytes(os.urandom(9))
    # 132 bits are 22 base-64 digits; shifted to 144 bits (18 bytes), they encode without padding
    return base64.b64encode((value << 12).to_bytes(18)).translate(_TO_ORDERED)[:ID_LENGTH].decode()


def job_id_for(queue_key: str, job_id: str | None) -> str:
    """The id a job enqueued on ``queue_key`` gets: ``job_id`` (a new one if None), starting
    with the queue's hash tag for a tagged queue (the tagged layout, :mod:`asyncjobs.keys`: the
    job's keys then hash with its queue's); a given id that lacks it gets it in front, one with
    another tag is refused (:class:`ConfigError`): a job's tag is always its queue's."""
    tag = keys.tag_of(queue_key)
    if job_id is None:
        return tag + new_job_id() if tag else new_job_id()
    given = keys.tag_of(job_id)
    if given == tag:
        return job_id
    if not given:
        return tag + job_id
    raise ConfigError(
        f"job id {job_id!r} holds the hash tag {given}, and its queue {keys.queue_name_of(queue_key)!r} "
        f"{'has ' + tag if tag else 'none'}: a job's id starts with its queue's tag",
        key="job_id",
    )


class _ReconnectBackoff(AbstractBackoff):
    """:data:`asyncjobs.backoff.RECONNECT` as redis-py wants a backoff."""

    def reset(self) -> None:
        pass

    def compute(self, failures: int) -> float:
        return RECONNECT.delay(failures)


class Reconnect(Retry):
    """redis-py's ``Retry`` for a lost connection (a Redis restart, a failover): reconnect with
    exponential backoff capped at 1 s, warning (at most every few seconds, URL masked) while
    Redis is away. ``retries=-1`` keeps trying for ever (what a worker wants)."""

    def __init__(self, url: str, retries: int) -> None:
        # OSError: redis-py's connect() raises the socket's own error (connection refused)
        errors = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError)
        super().__init__(_ReconnectBackoff(), retries, errors)  # type: ignore[arg-type]
        self.masked_url = mask_url(url)
        self.give_up_at: float | None = None

    def __deepcopy__(self, memo: dict[int, Any]) -> Reconnect:
        # redis-py gives each connection a deep copy; share this one, so give_up() reaches all
        return self

    def give_up(self, after: float) -> None:
        """Stop reconnecting ``after`` seconds from now: commands then fail at their next
        connection error (a worker shutting down while Redis is away must not wait for it)."""
        self.give_up_at = time.monotonic() + after

    async def call_with_retry(self, do: Callable[[], Awaitable[T]], fail: Callable[[RedisError], Any]) -> T:
        async def failed(error: RedisError) -> Any:
            if self.give_up_at is not None and time.monotonic() >= self.give_up_at:
                raise error
            if _LOST_WARNINGS.due():
                logger.warning(
                    "lost Redis at %s (%s); reconnecting with backoff (next attempt within 1s)", self.masked_url, error
                )
            return await fail(error)

        return await super().call_with_retry(do, failed)


async def follow_failovers(redis: Any, url: str) -> None:
    """Give a Sentinel-managed pool the :class:`Reconnect` policy and connections that ask the
    sentinels for the primary on every attempt (:class:`~asyncjobs.redis_url.SentinelConnection`),
    so its commands ride out a failover instead of raising at the first refused connection.
    arq's ``create_pool`` builds a plain arq worker's Sentinel pool without
    ``RedisSettings.retry``, so that worker exited at a failover. Its idle connections are
    closed and made again the new way; nothing to do for another pool."""
    pool = getattr(redis, "connection_pool", None)
    if not isinstance(pool, SentinelConnectionPool) or isinstance(pool.connection_kwargs.get("retry"), Reconnect):
        return
    pool.connection_class = redis_url.SentinelConnection
    pool.connection_kwargs.update(retry=Reconnect(url, -1), retry_on_error=[RedisConnectionError, RedisTimeoutError])
    await pool.disconnect()
    pool.reset()  # type: ignore[no-untyped-call]


async def wait_until_reachable(
    ping: Callable[[], Awaitable[object]], url: str, *, attempts: int | None = None, note: str = ""
) -> int:
    """Call ``ping`` until Redis answers, :data:`~asyncjobs.backoff.RECONNECT` delays apart (at
    most 1 s, so work starts within about a second of Redis coming up). Logs the first failure,
    then one line every few seconds (masked URL, attempt, next delay; each attempt at debug
    level), and ``connected to Redis at …`` once it answers. After ``attempts`` failures it
    raises :class:`BrokerUnavailable`. Returns the number of failed attempts."""
    retrying = Retrying(
        logger,
        "cannot reach Redis at {url} ({reason}){note}; attempt {attempt}, next attempt in {delay:.2f}s",
        recovered="connected to Redis at {url} after {attempt} failed attempt(s)",
        url=mask_url(url),
        note=note,
    )
    while True:
        try:
            await ping()
        except (TimeoutError, RedisError, OSError) as e:
            if attempts is not None and retrying.failures + 1 >= attempts:
                raise BrokerUnavailable(mask_url(url), str(e) or type(e).__name__) from e
            await retrying.pause(e)
            continue
        return retrying.succeeded()


def give_up_reconnecting(redis: Any, after: float) -> None:
    """Let ``redis``'s commands stop reconnecting ``after`` seconds from now (see
    :meth:`Reconnect.give_up`); nothing to do for a client without :class:`Reconnect`."""
    pool = getattr(redis, "connection_pool", None)  # (a cluster client has one per node)
    retry = pool.connection_kwargs.get("retry") if pool is not None else None
    if isinstance(retry, Reconnect):
        retry.give_up(after)


def reconnect_retries(seconds: float | None) -> int:
    """Retry count for about ``seconds`` of reconnecting (``None``: for ever)."""
    if seconds is None:
        return -1
    return 0 if seconds <= 0 else int(seconds) + 4  # 0.1 + 0.2 + 0.4 + 0.8, then 1 s apart


def create_broker(
    url: str,
    *,
    queue: str = keys.DEFAULT_QUEUE,
    max_connections: int | None = None,
    job_expiry: float | None = None,
    reconnect_for: float | None = 0.0,
    durable: float = 0.0,
) -> Broker:
    """A :class:`Broker` for ``url`` (not yet connected). ``memory://[name]`` gives the embedded
    in-memory broker: one per name and process, nothing persists.

    ``reconnect_for``: seconds a command keeps reconnecting (with backoff) when the connection
    is lost before it raises; 0 raises at once (the web API answers 503), ``None`` never gives up.
    ``durable``: seconds each enqueue waits for a replica to confirm it (0: it does not wait).
    """
    target = redis_url.parse(url)
    common: dict[str, Any] = {
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "default_queue_name": keys.queue(queue),
        "expires_extra_ms": 0 if job_expiry is None else int(job_expiry * 1000),  # 0: jobs never expire
    }
    if url.startswith("memory://"):
        broker = Broker(memory.pool(url, max_connections), **common)
    elif target.cluster:
        from asyncjobs.cluster import create_cluster_broker  # (it builds on this module)

        options = {} if max_connections is None else {"max_connections": max_connections}
        # a ClusterBroker has the Broker's methods (BrokerMixin) on a RedisCluster client
        broker = cast(Broker, create_cluster_broker(target, **common, **options))
    else:
        retries = reconnect_retries(reconnect_for)
        retry = {"retry": Reconnect(url, retries), "retry_on_error": [RedisConnectionError, RedisTimeoutError]}
        connect_timeout = target.options.get("socket_connect_timeout", 5.0)
        pool = redis_url.async_pool(
            target,
            max_connections=max_connections,
            socket_connect_timeout=connect_timeout,
            **(retry if retries else {}),
        )
        broker = Broker(pool, **common)
        broker._line = EnqueueLine(pool)
    broker.url = url
    broker.durable = durable
    return broker


CLUSTER_REFUSED = (
    "{url} is a Redis Cluster node: a redis:// URL names one Redis primary. For cluster mode, "
    "use redis+cluster://host1:port,host2:port and name every queue with a hash tag, such as "
    "{{high}} (README: Redis Cluster)"
)


async def refuse_cluster(redis: Any, url: str) -> None:
    """:class:`ConfigError` if ``url`` is a Redis Cluster node, said at connect time rather than
    as a script's "non local key" error at the first enqueue. A Redis that refuses ``INFO``
    (an ACL) is let through."""
    if url.startswith("memory://") or redis_url.parse(url).cluster:
        return
    try:
        info = await redis.info("cluster")
    except ResponseError:
        return
    if info.get("cluster_enabled"):
        raise ConfigError(CLUSTER_REFUSED.format(url=mask_url(url)), key="redis_url")


async def connect_broker(
    url: str,
    *,
    queue: str = keys.DEFAULT_QUEUE,
    job_expiry: float | None = None,
    reconnect_for: float | None = 10.0,
    durable: float = 0.0,
) -> Broker:
    """Create a broker for ``url`` and check it answers (at once: :class:`BrokerUnavailable`
    if not); afterwards a lost connection is re-established for ``reconnect_for`` seconds."""
    probe = create_broker(url, queue=queue)
    try:
        await probe.ping()
        await refuse_cluster(probe, url)
    except (RedisError, OSError) as e:
        raise BrokerUnavailable(mask_url(url), str(e) or type(e).__name__) from e
    finally:
        await probe.aclose(close_connection_pool=True)
    return create_broker(url, queue=queue, job_expiry=job_expiry, reconnect_for=reconnect_for, durable=durable)
