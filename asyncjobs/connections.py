"""Connecting to Redis: URL validation, the embedded in-memory broker, and :class:`Broker`,
arq's ``ArqRedis`` with a one-round-trip enqueue that wakes idle workers."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any
from urllib.parse import urlparse, urlunparse
from uuid import uuid4

from arq.connections import ArqRedis
from arq.constants import expires_extra_ms
from arq.jobs import Job
from arq.utils import timestamp_ms, to_ms, to_unix_ms
from redis.asyncio import ConnectionPool
from redis.exceptions import RedisError

from asyncjobs import keys, scripts
from asyncjobs.errors import BrokerUnavailable, ConfigError
from asyncjobs.serialization import deserialize, serialize

logger = logging.getLogger(__name__)

SCHEMES = ("redis", "rediss", "unix", "memory")
_memory_servers: dict[str, Any] = {}


def mask_url(url: str) -> str:
    """The URL with any password replaced by ``***``, for logs and messages."""
    p = urlparse(url)
    if p.password:
        netloc = f"{p.username or ''}:***@{p.hostname or ''}" + (f":{p.port}" if p.port else "")
        return urlunparse(p._replace(netloc=netloc))
    return url


def validate_url(url: str) -> str:
    """Return ``url`` if it is a usable Redis URL, else raise :class:`ConfigError` saying why."""
    p = urlparse(url)
    if p.scheme not in SCHEMES or (p.scheme in ("redis", "rediss") and not p.hostname):
        raise ConfigError(
            f"REDIS_URL {mask_url(url)!r} is not a Redis URL: expected redis://host:port/db, "
            "rediss://… (TLS), unix:///path/to/socket or memory://",
            key="REDIS_URL",
        )
    if p.scheme in ("redis", "rediss"):
        try:
            _ = p.port
            db = p.path.lstrip("/")
            if db and not db.isdigit():
                raise ValueError(f"database {db!r} is not a number")
        except ValueError as e:
            raise ConfigError(f"REDIS_URL {mask_url(url)!r} is not valid: {e}", key="REDIS_URL") from None
    return url


class Broker(ArqRedis):
    """arq's Redis client, with asyncjobs' serializer and a single-round-trip enqueue.

    ``enqueue_job`` keeps arq's signature, so arq's cron and code written for arq use it too.
    """

    url: str = ""

    async def enqueue_job(  # type: ignore[override]
        self,
        function: str,
        *args: Any,
        _job_id: str | None = None,
        _queue_name: str | None = None,
        _defer_until: datetime | None = None,
        _defer_by: float | int | None = None,
        _expires: float | int | None = None,
        _job_try: int | None = None,
        **kwargs: Any,
    ) -> Job | None:
        queue_key = _queue_name or self.default_queue_name
        job_id = _job_id or uuid4().hex
        args_ = self.encode_enqueue(function, args, kwargs, job_id, queue_key, _defer_until, _defer_by, _expires, _job_try)
        if not await self.evalsha_enqueue(*args_):
            return None
        return Job(job_id, redis=self, _queue_name=queue_key, _deserializer=self.job_deserializer)

    def encode_enqueue(
        self,
        function: str,
        args: Any,
        kwargs: dict[str, Any],
        job_id: str,
        queue_key: str,
        defer_until: datetime | None,
        defer_by: float | int | None,
        expires: float | int | None,
        job_try: int | None,
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of the enqueue script for one job (no I/O)."""
        if defer_until is not None and defer_by is not None:
            raise ConfigError("use either defer_until or defer_by, not both")
        now = timestamp_ms()
        if defer_until is not None:
            score = to_unix_ms(defer_until)
        elif defer_by:
            score = now + to_ms(defer_by)
        else:
            score = now
        ttl = to_ms(expires) if expires else max(score - now, 0) + self.expires_extra_ms
        payload = serialize({"t": job_try, "f": function, "a": list(args), "k": kwargs, "et": now, "q": keys.queue_name_of(queue_key)})
        key_list = [keys.job(job_id), keys.result(job_id), keys.in_progress(job_id), queue_key, keys.RECENT]
        argv = [job_id, payload, score, ttl, keys.wake(queue_key), now, keys.RECENT_MAX]
        return key_list, argv

    async def evalsha_enqueue(self, key_list: list[str], argv: list[Any]) -> bool:
        return bool(await self._enqueue_script(keys=key_list, args=argv))

    @property
    def _enqueue_script(self) -> Any:
        script = getattr(self, "_asyncjobs_enqueue", None)
        if script is None:
            script = self._asyncjobs_enqueue = self.register_script(scripts.ENQUEUE)
        return script


def create_broker(url: str, *, queue: str = keys.DEFAULT_QUEUE, max_connections: int | None = None) -> Broker:
    """A :class:`Broker` for ``url`` (not yet connected). ``memory://[name]`` gives the embedded
    in-memory broker: one per name and process, nothing persists."""
    validate_url(url)
    common: dict[str, Any] = {
        "job_serializer": serialize,
        "job_deserializer": deserialize,
        "default_queue_name": keys.queue(queue),
        "expires_extra_ms": expires_extra_ms,
    }
    if url.startswith("memory://"):
        import fakeredis
        from fakeredis.aioredis import FakeConnection

        server = _memory_servers.setdefault(url, fakeredis.FakeServer())
        pool = ConnectionPool(connection_class=FakeConnection, server=server, max_connections=max_connections)
        broker = Broker(pool, **common)
    else:
        pool = ConnectionPool.from_url(url, max_connections=max_connections, socket_connect_timeout=5)
        broker = Broker(pool, **common)
    broker.url = url
    return broker


async def connect_broker(url: str, *, queue: str = keys.DEFAULT_QUEUE) -> Broker:
    """Create a broker for ``url`` and check it answers; :class:`BrokerUnavailable` if not."""
    broker = create_broker(url, queue=queue)
    try:
        await broker.ping()
    except (RedisError, OSError) as e:
        await broker.aclose(close_connection_pool=True)
        raise BrokerUnavailable(mask_url(url), str(e) or type(e).__name__) from e
    return broker
