"""The embedded in-memory broker behind ``REDIS_URL=memory://[name]`` (what ``asyncjobs dev``
runs on without ``REDIS_URL``): fakeredis, one server per name and process, nothing persists.

fakeredis is an optional dependency (the ``dev`` extra), so production installs and the
Docker image do not carry it; without it, ``memory://`` is a :class:`ConfigError` that names
the install command."""

from __future__ import annotations

from typing import Any

from redis.asyncio import ConnectionPool

from asyncjobs.errors import ConfigError

#: how to get what ``memory://`` needs
INSTALL = "pip install 'asyncjobs[dev]'"

_servers: dict[str, Any] = {}  # memory:// URL -> its fakeredis.FakeServer


def fakeredis_module() -> Any:
    """``fakeredis``, or a :class:`ConfigError` saying how to install it."""
    try:
        import fakeredis
    except ImportError as e:
        raise ConfigError(
            f"REDIS_URL memory:// (the embedded in-memory broker) needs fakeredis: {INSTALL} "
            "(or set REDIS_URL to a real Redis)",
            key="REDIS_URL",
        ) from e
    return fakeredis


def pool(url: str, max_connections: int | None) -> ConnectionPool:
    """A connection pool to the in-memory server named by ``url`` (created on first use)."""
    fakeredis = fakeredis_module()
    from fakeredis.aioredis import FakeAsyncRedisConnection

    server = _servers.setdefault(url, fakeredis.FakeServer())
    return ConnectionPool(connection_class=FakeAsyncRedisConnection, server=server, max_connections=max_connections)


def sync_client(server: Any) -> Any:
    """A synchronous client to ``server`` (what a :func:`pool` connection's ``server`` is)."""
    return fakeredis_module().FakeRedis(server=server)
