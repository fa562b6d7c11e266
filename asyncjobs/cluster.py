"""Cluster mode: asyncjobs on a Redis Cluster (``redis+cluster://h1:7000,h2:7001``).

Every queue is named with a hash tag (``{high}``): the tagged layout of :mod:`asyncjobs.keys`
keeps a queue, its jobs' keys and its copy of the set-wide keys in the tag's one hash slot, so
every script call touches one slot and queues with different tags spread over the shards.

:class:`ClusterBroker` is redis-py's ``RedisCluster`` with the broker's enqueue
(:class:`~asyncjobs.connections.BrokerMixin`): commands and scripts go to the node that serves
their first key's slot. Pub/sub (wake-ups, job events) runs over one plain connection to a
node: a Redis Cluster forwards every ``PUBLISH`` to all its nodes.

Plain arq workers cannot join: arq's worker reads ``arq:queue`` and its ``arq:abort`` set,
which are not tagged, and its scripts-less moves span slots.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.cluster
from redis._parsers import AsyncCommandsParser
from redis.asyncio import ConnectionPool, Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asyncjobs import keys
from asyncjobs.connections import BrokerMixin
from asyncjobs.errors import ConfigError
from asyncjobs.redis_url import RedisURL


class ClusterBroker(BrokerMixin, RedisCluster):  # type: ignore[misc]  # (redis-py's own stubs disagree)
    """A Redis Cluster client with asyncjobs' enqueue and arq's broker attributes."""

    def __init__(
        self,
        target: RedisURL,
        *,
        job_serializer: Any,
        job_deserializer: Any,
        default_queue_name: str,
        expires_extra_ms: int,
        **kwargs: Any,
    ) -> None:
        self.target = target
        self.job_serializer = job_serializer
        self.job_deserializer = job_deserializer
        self.default_queue_name = default_queue_name
        self.expires_extra_ms = expires_extra_ms
        self._pubsub_client: Redis | None = None
        options = {k: v for k, v in target.options.items() if k in ("socket_timeout", "socket_connect_timeout")}
        super().__init__(
            startup_nodes=[ClusterNode(h, p) for h, p in target.hosts],
            username=target.username,
            password=target.password,
            **options,
            **kwargs,
        )
        self.commands_parser = CommandTable()

    def pubsub(self, **kwargs: Any) -> Any:
        """A subscription over a plain connection to any node (a cluster forwards every publish
        to all its nodes): each (re)connect tries the nodes the client knows, in random order,
        so a subscription outlives the node it was on (it subscribes again where it lands)."""
        if self._pubsub_client is None:
            pool = ConnectionPool(
                connection_class=AnyNodeConnection,
                nodes=self.node_addresses,
                username=self.target.username,
                password=self.target.password,
                socket_connect_timeout=self.target.options.get("socket_connect_timeout", 2.0),
            )
            self._pubsub_client = Redis(connection_pool=pool)
        return self._pubsub_client.pubsub(**kwargs)

    def node_addresses(self) -> list[tuple[str, int]]:
        """The nodes this client knows (the URL's too), in random order."""
        known = {(str(n.host), int(n.port)) for n in self.get_nodes()} | set(self.target.hosts)
        return random.sample(sorted(known), len(known))

    async def publish(self, channel: Any, message: Any) -> int:
        """``PUBLISH`` on any primary that answers (the cluster forwards it to all): redis-py's
        asyncio cluster client has no ``publish`` of its own (its pipelines have)."""
        error: BaseException | None = None
        for node in random.sample(self.get_primaries(), len(self.get_primaries())):
            try:
                return int(await self.execute_command("PUBLISH", channel, message, target_nodes=node))
            except (RedisConnectionError, RedisTimeoutError) as e:  # a node away: the next one
                error = e
        raise error or RedisConnectionError("no cluster node is known")

    async def mget(self, keys: Any, *args: Any) -> list[Any]:
        """``MGET`` over any slots: one ``MGET`` per slot, answers in the keys' order."""
        return await self.mget_nonatomic(keys, *args)

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        """Close the cluster connections; with ``close_connection_pool`` (its owner closing it)
        the subscription client too. redis-py calls ``aclose()`` itself after a lost node, to
        read the layout again: the event listener's connection is not the cluster's to close."""
        if close_connection_pool and self._pubsub_client is not None:
            await self._pubsub_client.aclose()
            self._pubsub_client = None
        await super().aclose()


class CommandTable(AsyncCommandsParser):
    """redis-py's command table, read once. redis-py reads it again from the first primary each
    time it re-reads the cluster's layout (after a lost node): with that primary down, every
    command failed until it was back. The table is the same on every node."""

    async def initialize(self, node: Any = None) -> None:
        if node is not None:
            self.node = node
        if not getattr(self, "commands", None):
            await super().initialize()


class AnyNodeConnection(Connection):
    """A connection to whichever node of ``nodes()`` answers first (tried in turn)."""

    def __init__(self, *, nodes: Callable[[], list[tuple[str, int]]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._nodes = nodes

    async def _connect(self) -> None:
        error: BaseException | None = None
        for host, port in self._nodes():
            self.host, self.port = host, port
            try:
                await super()._connect()  # type: ignore[no-untyped-call]
                return
            except (OSError, TimeoutError) as e:
                error = e
        raise error or OSError("no cluster node is known")


def is_cluster(client: Any) -> bool:
    """True for a cluster mode client (:class:`ClusterBroker`, or a sync cluster client)."""
    return isinstance(client, RedisCluster | redis.cluster.RedisCluster)


def check_tagged(queues: Sequence[str]) -> None:
    """:class:`ConfigError` unless every queue name holds a hash tag (cluster mode needs them)."""
    untagged = [q for q in queues if not keys.tag_of(keys.queue(q))]
    if untagged:
        names = ", ".join(repr(q) for q in untagged)
        hint = ", ".join("{" + q.strip(":{}") + "}" for q in untagged)
        raise ConfigError(
            f"Redis Cluster needs every queue named with a hash tag, so that a queue and its jobs "
            f"live in one hash slot: {names} has none (name it {hint}; README: Redis Cluster)",
            key="queues",
        )


def check_cluster_use(queues: Sequence[str], *, durable: float = 0.0) -> None:
    """:class:`ConfigError` for what cluster mode cannot do: untagged queues
    (:func:`check_tagged`) and a durable enqueue (``WAIT`` answers for one node's replicas)."""
    check_tagged(queues)
    if durable:
        raise ConfigError("a durable enqueue (WAIT for a replica) is not available in cluster mode", key="durable")


def create_cluster_broker(target: RedisURL, **attrs: Any) -> ClusterBroker:
    """A :class:`ClusterBroker` for ``target`` (a ``redis+cluster://`` URL), not yet connected;
    ``attrs``: the broker's serializer, deserializer, default queue and job expiry."""
    return ClusterBroker(target, **attrs)  # type: ignore[abstract]


def sync_client(pool: Any, socket_timeout: float) -> Any:
    """A synchronous cluster client to the cluster ``pool`` (a :class:`ClusterBroker`) talks
    to: the lease renewal thread's."""
    target: RedisURL = pool.target
    return redis.cluster.RedisCluster(
        startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in target.hosts],  # type: ignore[no-untyped-call]
        username=target.username,
        password=target.password,
        socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout,
    )
