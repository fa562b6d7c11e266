"""``REDIS_URL``: the one parser of every URL form, and what each process builds from it.

Forms (see the README's Configuration section)::

    redis://[[user]:password@]host[:port][/db][?options]
    rediss://[[user]:password@]host[:port][/db][?options]             TLS
    unix://[[user]:password@]/path/to/socket[?db=N&options]
    redis+sentinel://[[user]:password@]h1[:port],h2[:port],…/service[/db][?options]
    redis+cluster://[[user]:password@]h1[:port],h2[:port],…[?options]      Redis Cluster
    memory://[name]                                                   embedded broker

Options (query parameters): ``socket_timeout`` and ``socket_connect_timeout`` (seconds) on
every form; ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile`` (paths), ``ssl_cert_reqs``
(``none``, ``optional``, ``required``) and ``ssl_check_hostname`` (``true``/``false``) on
``rediss://``; ``sentinel_password`` and ``sentinel_username`` (the sentinels' own ACL,
when it differs from the primary's) on ``redis+sentinel://``. Anything else is an error.

The same :class:`RedisURL` gives the asyncio pool of clients, workers and the web server
(:func:`async_pool`, a ``SentinelConnectionPool`` that follows a failover for the Sentinel
form) and plain arq workers' ``RedisSettings`` (:func:`arq_settings`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from arq.connections import RedisSettings
from redis.asyncio import ConnectionPool
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import NoBackoff

from asyncjobs.errors import ConfigError

SCHEMES = ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "memory")
DEFAULT_PORT = 6379
DEFAULT_SENTINEL_PORT = 26379
EXPECTED = (
    "expected redis://host:port/db, rediss://… (TLS), unix:///path/to/socket, "
    "redis+sentinel://host1:26379,host2:26379/service/db, redis+cluster://host1:7000,host2:7001 or memory://"
)
SOCKET_OPTIONS = ("socket_timeout", "socket_connect_timeout")
SSL_OPTIONS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_cert_reqs", "ssl_check_hostname")
SSL_PATHS = ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
SENTINEL_OPTIONS = ("sentinel_password", "sentinel_username")
CERT_REQS = ("none", "optional", "required")


@dataclass(frozen=True)
class RedisURL:
    """A parsed ``REDIS_URL``: where Redis is and how to talk to it."""

    url: str
    scheme: str
    hosts: tuple[tuple[str, int], ...] = ()  # one for redis(s)://, the sentinels for Sentinel
    path: str | None = None  # the socket of unix://
    db: int = 0
    username: str | None = None
    password: str | None = None
    service: str | None = None  # the Sentinel service (master) name
    #: connection keyword arguments from the query string (socket timeouts, ssl_*)
    options: dict[str, Any] = field(default_factory=dict)
    #: the sentinels' own credentials (``sentinel_password``, ``sentinel_username``)
    sentinel_auth: dict[str, str] = field(default_factory=dict)

    @property
    def tls(self) -> bool:
        return self.scheme == "rediss"

    @property
    def sentinel(self) -> bool:
        return self.scheme == "redis+sentinel"

    @property
    def cluster(self) -> bool:
        return self.scheme == "redis+cluster"

    def connection_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of one connection to the Redis that serves jobs (for Sentinel,
        of the primary's connections; its address comes from the sentinels)."""
        kw: dict[str, Any] = {"db": self.db, "username": self.username, "password": self.password, **self.options}
        if self.path is not None:
            kw["path"] = self.path
        elif not self.sentinel:
            kw["host"], kw["port"] = self.hosts[0]
        return kw


def mask(url: str) -> str:
    """``url`` with any password replaced by ``***`` (query parameters ending in ``password``
    too), for logs and messages."""
    head, q, query = url.partition("?")
    scheme, sep, rest = head.partition("://")
    userinfo, at, hostpart = rest.rpartition("@")
    if at and ":" in userinfo:
        head = f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{hostpart}"
    if query:
        pairs = [p.partition("=") for p in query.split("&")]
        query = "&".join(f"{k}{eq}***" if k.endswith("password") and v else f"{k}{eq}{v}" for k, eq, v in pairs)
    return f"{head}{q}{query}"


def _bad(url: str, why: str) -> ConfigError:
    return ConfigError(f"REDIS_URL {mask(url)!r} is not valid: {why}", key="REDIS_URL")


def parse(url: str) -> RedisURL:
    """Parse ``url``, or raise :class:`ConfigError` naming what is wrong (password masked)."""
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"REDIS_URL {mask(url)!r} is not a Redis URL: {EXPECTED}", key="REDIS_URL")
    if parts.scheme == "memory":
        return RedisURL(url, "memory")
    userinfo, _, hostpart = parts.netloc.rpartition("@")
    user, colon, password = userinfo.partition(":")
    creds: dict[str, Any] = {"username": unquote(user) or None, "password": unquote(password) if colon else None}
    options, sentinel_auth = _query(url, parts.scheme, parts.query)
    if parts.scheme == "unix":
        if not parts.path:
            raise _bad(url, "no socket path: unix:///path/to/redis.sock")
        db = options.pop("db", 0)
        return RedisURL(url, "unix", path=unquote(parts.path), db=db, options=options, **creds)
    if parts.scheme == "redis+sentinel":
        return _sentinel(url, hostpart, parts.path, options, sentinel_auth, creds)
    hosts = _hosts(url, hostpart, DEFAULT_PORT)
    if parts.scheme == "redis+cluster":  # any nodes of the cluster: it names the others
        if parts.path.strip("/") not in ("", "0"):
            raise _bad(url, "a Redis Cluster has database 0 only")
        return RedisURL(url, parts.scheme, hosts=hosts, options=options, **creds)
    if len(hosts) != 1:
        raise _bad(url, "name one host (several hosts are for redis+sentinel://)")
    return RedisURL(url, parts.scheme, hosts=hosts, db=_db(url, parts.path.lstrip("/")), options=options, **creds)


def _sentinel(
    url: str, hostpart: str, path: str, options: dict[str, Any], auth: dict[str, str], creds: dict[str, Any]
) -> RedisURL:
    service, _, db = path.lstrip("/").partition("/")
    if not service:
        raise _bad(url, "no service name: redis+sentinel://host1:26379,host2:26379/mymaster/0")
    hosts = _hosts(url, hostpart, DEFAULT_SENTINEL_PORT)
    return RedisURL(
        url, "redis+sentinel", hosts=hosts, db=_db(url, db), service=unquote(service), options=options,
        sentinel_auth=auth, **creds,
    )  # fmt: skip


def _hosts(url: str, hostpart: str, default_port: int) -> tuple[tuple[str, int], ...]:
    hosts = []
    for item in hostpart.split(","):
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port = rest.removeprefix(":")
        else:
            host, _, port = item.partition(":")
        if not host:
            raise _bad(url, "no host name")
        if port and not (port.isdigit() and 0 < int(port) < 65536):
            raise _bad(url, f"port {port!r} is not a number from 1 to 65535")
        hosts.append((unquote(host), int(port) if port else default_port))
    return tuple(hosts)


def _db(url: str, db: str) -> int:
    db = db.strip("/")
    if db and not db.isdigit():
        raise _bad(url, f"database {db!r} is not a number")
    return int(db) if db else 0


def _query(url: str, scheme: str, query: str) -> tuple[dict[str, Any], dict[str, str]]:
    allowed = SOCKET_OPTIONS + {"rediss": SSL_OPTIONS, "redis+sentinel": SENTINEL_OPTIONS, "unix": ("db",)}.get(
        scheme, ()
    )
    options: dict[str, Any] = {}
    auth: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name not in allowed:
            hint = " (TLS options need rediss://)" if name in SSL_OPTIONS else ""
            raise _bad(url, f"unknown parameter {name!r}{hint}; {scheme}:// takes: {', '.join(allowed)}")
        if name in SENTINEL_OPTIONS:
            auth[name.removeprefix("sentinel_")] = value
        else:
            options[name] = _option(url, name, value)
    return options, auth


def _option(url: str, name: str, value: str) -> Any:
    if name in SOCKET_OPTIONS:
        try:
            seconds = float(value)
        except ValueError:
            seconds = -1.0
        if not seconds > 0:
            raise _bad(url, f"{name} {value!r} is not a number of seconds > 0")
        return seconds
    if name == "db":
        return _db(url, value)
    if name == "ssl_cert_reqs":
        if value.lower() not in CERT_REQS:
            raise _bad(url, f"ssl_cert_reqs {value!r}: use one of {', '.join(CERT_REQS)}")
        return value.lower()
    if name == "ssl_check_hostname":
        if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise _bad(url, f"ssl_check_hostname {value!r}: use true or false")
        return value.lower() in ("true", "1", "yes")
    if not os.path.isfile(value):  # the ssl_* paths: say so now, not at the first connection
        raise _bad(url, f"{name}: no such file {value!r}")
    return value


class SentinelConnection(SentinelManagedConnection):
    """A connection to the primary the sentinels name, asking them again on every attempt.

    redis-py's own retries the address it got first (for ever with a retry that never gives
    up, so it never saw the promoted replica): here the address lookup is inside the retry."""

    _once = Retry(NoBackoff(), 0)

    async def connect_to(self, address: tuple[str, int]) -> None:
        retry, self.retry = self.retry, self._once
        try:
            await super().connect_to(address)  # type: ignore[no-untyped-call]
        finally:
            self.retry = retry


def async_pool(u: RedisURL, **extra: Any) -> ConnectionPool:
    """The asyncio connection pool for ``u`` (``extra``: more connection keyword arguments,
    e.g. ``retry``, and ``max_connections``). For Sentinel, a ``SentinelConnectionPool``:
    each new connection asks the sentinels for the current primary, so a failover is
    followed by reconnecting."""
    kwargs = {**u.connection_kwargs(), **extra}
    if u.sentinel:
        sentinel_kwargs = {k: v for k, v in u.options.items() if k in SOCKET_OPTIONS}
        sentinel_kwargs.update(u.sentinel_auth)
        if "password" not in sentinel_kwargs and u.password is not None:
            sentinel_kwargs["password"] = u.password  # most deployments share one password
        manager = Sentinel(list(u.hosts), sentinel_kwargs=sentinel_kwargs, **kwargs)  # type: ignore[no-untyped-call]
        pool: ConnectionPool = SentinelConnectionPool(  # type: ignore[no-untyped-call]
            u.service, manager, **manager.connection_kwargs, is_master=True, connection_class=SentinelConnection
        )
        return pool
    if u.path is not None:
        kwargs["connection_class"] = UnixDomainSocketConnection
    else:
        kwargs["connection_class"] = SSLConnection if u.tls else Connection
    return ConnectionPool(**kwargs)


CLUSTER_ARQ_REFUSED = (
    "plain arq workers cannot join cluster mode (REDIS_URL is redis+cluster://): arq's worker reads "
    "untagged keys that span hash slots; run `asyncjobs worker` instead (README: Redis Cluster)"
)


class ClusterModeSettings(RedisSettings):
    """arq's settings in cluster mode, in a ``WorkerSettings`` class: asyncjobs' workers connect
    by ``redis_url``; a plain arq worker started with them stops, saying why, when it connects."""

    def __getattribute__(self, name: str) -> Any:
        if name in ("host", "sentinel", "unix_socket_path"):
            raise ConfigError(CLUSTER_ARQ_REFUSED, key="REDIS_URL")
        return super().__getattribute__(name)


def arq_settings(u: RedisURL) -> RedisSettings:
    """arq's ``RedisSettings`` for ``u`` (a plain ``arq`` worker connects with them)."""
    if u.cluster:
        return ClusterModeSettings()
    o = u.options
    rs = RedisSettings(database=u.db, username=u.username, password=u.password)
    if u.sentinel:
        rs.host, rs.sentinel, rs.sentinel_master = list(u.hosts), True, u.service or ""
    elif u.path is not None:
        rs.unix_socket_path = u.path
    else:
        rs.host, rs.port = u.hosts[0]
    if "socket_connect_timeout" in o:
        rs.conn_timeout = max(1, round(o["socket_connect_timeout"]))
    if u.tls:
        rs.ssl = True
        rs.ssl_ca_certs, rs.ssl_certfile, rs.ssl_keyfile = (o.get(k) for k in SSL_PATHS)
        rs.ssl_cert_reqs = o.get("ssl_cert_reqs", rs.ssl_cert_reqs)
        rs.ssl_check_hostname = o.get("ssl_check_hostname", rs.ssl_check_hostname)
    return rs


async def close_sentinels(pool: ConnectionPool) -> None:
    """Close the connections ``pool`` (a ``SentinelConnectionPool``) holds to the sentinels;
    nothing to do for another pool."""
    if isinstance(pool, SentinelConnectionPool):
        for sentinel in pool.sentinel_manager.sentinels:
            await sentinel.aclose()
