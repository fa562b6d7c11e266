"""Test helpers: a private ``redis-server`` on a free loopback port, workers run in-process,
and stopping subprocesses.

asyncjobs' own tests and benchmarks use it, and so can yours::

    server = RedisServer(tmp_path)
    server.start()
    async with asyncjobs.connect(server.url) as client: ...
    server.stop()

It needs the ``redis-server`` binary (Debian: ``apt-get install redis-server``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import redis
from arq.cron import CronJob
from redis.crc import key_slot

from asyncjobs.config import Settings, worker_settings
from asyncjobs.connections import create_broker
from asyncjobs.registry import JobFunction, Registry
from asyncjobs.runner import build_worker
from asyncjobs.worker import Worker


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A redis-server process of its own, in ``directory``; AOF on by default (as in
    docker-compose.yml). ``stop()`` then ``start()`` restarts it on the same port.

    ``databases``: how many logical databases it has (Redis's default: 16); tests that share
    one server can each take a database of their own (:meth:`url_of`)."""

    def __init__(
        self,
        directory: Path | str,
        *,
        password: str | None = None,
        port: int | None = None,
        appendonly: bool = True,
        replica_of: int | None = None,
        databases: int = 16,
    ) -> None:
        self.dir = Path(directory)
        self.port = port or free_port()
        self.password = password
        self.appendonly = appendonly
        self.replica_of = replica_of  # the loopback port of the primary this one replicates
        self.databases = databases
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of database 0."""
        return self.url_of(0)

    def url_of(self, db: int) -> str:
        """The URL of database ``db`` (0 to ``databases - 1``)."""
        if not 0 <= db < self.databases:
            raise ValueError(
                f"database {db} is out of range: this server has {self.databases} (0 to {self.databases - 1})"
            )
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10.0) -> None:
        """Start it and return once it answers PING."""
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server (.ci/run does)")
        args = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""]
        args += ["--appendonly", "yes", "--appendfsync", "everysec"] if self.appendonly else ["--appendonly", "no"]
        args += ["--daemonize", "no", "--loglevel", "warning", "--repl-diskless-sync-delay", "0"]
        args += ["--databases", str(self.databases)]
        if self.password:
            args += ["--requirepass", self.password, "--masterauth", self.password]
        if self.replica_of is not None:
            args += ["--replicaof", "127.0.0.1", str(self.replica_of)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.2).ping()
                return
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)  # polling with a deadline for the process to listen
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        """Stop it (SIGTERM: with AOF on, what was written survives a restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None

    def kill(self) -> None:
        """SIGKILL it: a crash, with no chance to write or hand anything over."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None

    def flush(self) -> None:
        """Delete every key, in every database."""
        redis.Redis(port=self.port, password=self.password).flushall()


class RedisSentinels:
    """A Redis primary, one replica and ``count`` sentinels watching them (quorum 2), all on
    loopback with their files in ``directory``: a failover to test against. ``url`` is the
    Sentinel ``REDIS_URL``; :meth:`RedisServer.kill` on ``primary`` crashes the primary and
    :meth:`wait_for_failover` waits until the sentinels name the replica the new primary."""

    SERVICE = "mymaster"

    def __init__(
        self, directory: Path | str, *, count: int = 3, down_after_ms: int = 1000, failover_timeout_ms: int = 3000
    ) -> None:
        self.dir = Path(directory)
        self.primary = RedisServer(self.dir / "primary", appendonly=False)
        self.replica = RedisServer(self.dir / "replica", appendonly=False, replica_of=self.primary.port)
        self.ports: list[int] = []
        while len(self.ports) < count:
            port = free_port()
            if port not in (self.primary.port, self.replica.port, *self.ports):
                self.ports.append(port)
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis+sentinel://{','.join(f'127.0.0.1:{p}' for p in self.ports)}/{self.SERVICE}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Start the primary, the replica and the sentinels; return once the replica is in sync
        and every sentinel knows the replica and the other sentinels (so a failover can run)."""
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server (.ci/run does)")
        for server in (self.primary, self.replica):
            server.dir.mkdir(parents=True, exist_ok=True)
            server.start()
        for port in self.ports:
            conf = self.dir / f"sentinel-{port}.conf"  # a sentinel rewrites its own file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.dir}\nloglevel warning\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} {self.down_after_ms}\n"
                f"sentinel failover-timeout {self.SERVICE} {self.failover_timeout_ms}\n"
            )
            args = [exe, str(conf), "--sentinel"]
            self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        others = len(self.ports) - 1
        self._wait(timeout, "the sentinels to see the replica and each other", lambda m: (
            int(m["num-slaves"]) == 1 and int(m["num-other-sentinels"]) == others
        ))  # fmt: skip

    def primary_port(self) -> int | None:
        """The primary's port as the first sentinel that answers names it."""
        for port in self.ports:
            with contextlib.suppress(redis.exceptions.RedisError):
                sentinel = redis.Redis(port=port, socket_timeout=1)
                addr = sentinel.sentinel_get_master_addr_by_name(self.SERVICE)  # type: ignore[no-untyped-call]
                return int(addr[1]) if addr else None
        return None

    def wait_for_failover(self, timeout: float = 30.0) -> None:
        """Return once every sentinel names the replica as the primary."""
        port = self.replica.port
        self._wait(timeout, "the failover", lambda m: int(m["port"]) == port and "s_down" not in m["flags"])

    def _wait(self, timeout: float, what: str, ok: Any) -> None:
        def every_sentinel_agrees() -> bool:
            sentinels = [redis.Redis(port=p, socket_timeout=1) for p in self.ports]
            return all(ok(s.sentinel_master(self.SERVICE)) for s in sentinels)  # type: ignore[no-untyped-call]

        _poll(time.monotonic() + timeout, what, every_sentinel_agrees, (redis.exceptions.RedisError, KeyError))

    def stop(self) -> None:
        """Stop the sentinels and both servers."""
        for proc in self.procs:
            stop_process(proc, timeout=5)
        self.procs.clear()
        self.replica.stop()
        self.primary.stop()


CLUSTER_BUS_OFFSET = 10_000


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


class RedisClusterNodes:
    """A Redis Cluster of ``primaries`` primaries (no replicas) on loopback, with their files in
    ``directory``: the 16,384 hash slots split between them by ``redis-cli --cluster create``.
    ``url`` is the first node's."""

    def __init__(self, directory: Path | str, *, primaries: int = 3, full_coverage: bool = True) -> None:
        self.dir = Path(directory)
        #: ``False``: the nodes keep serving their slots while another node is down
        #: (``cluster-require-full-coverage no``)
        self.full_coverage = full_coverage
        self.ports: list[int] = []
        while len(self.ports) < primaries:
            port = free_port()  # each node also listens on port + 10000 (the cluster bus)
            if port + CLUSTER_BUS_OFFSET < 65536 and port not in self.ports and _is_free(port + CLUSTER_BUS_OFFSET):
                self.ports.append(port)
        self.procs: list[subprocess.Popen[bytes]] = []
        self._args: dict[int, list[str]] = {}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def kill_node(self, port: int) -> None:
        """SIGKILL the node on ``port`` (its slots are unserved until :meth:`restart_node`)."""
        proc = self.procs[self.ports.index(port)]
        proc.kill()
        proc.wait(10)

    def restart_node(self, port: int, timeout: float = 30.0) -> None:
        """Start the node on ``port`` again (it rejoins from its nodes.conf) and return once every
        node says the cluster is ok."""
        i = self.ports.index(port)
        self.procs[i] = subprocess.Popen(self._args[port], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        ok = lambda r: r.cluster("INFO").get("cluster_state") == "ok"  # noqa: E731
        self._wait(time.monotonic() + timeout, "the cluster to be ok again", ok)

    @property
    def cluster_url(self) -> str:
        """The cluster mode URL naming every node (``redis+cluster://…``)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def _slots(self) -> list[tuple[int, int, int]]:
        """(first slot, last slot, port) of each range, as a live node tells them."""
        for port in self.ports:
            with contextlib.suppress(redis.exceptions.RedisError):
                with redis.Redis(port=port, socket_timeout=2) as r:
                    table: Any = r.cluster("SLOTS")
                return [(int(start), int(end), int(node[1])) for start, end, node, *_ in table]
        raise RuntimeError("no cluster node answers")

    def node_of(self, key: str) -> int:
        """The port of the node that serves ``key``'s hash slot."""
        slot = key_slot(key.encode())
        port = next((p for start, end, p in self._slots() if start <= slot <= end), None)
        if port is None:
            raise LookupError(f"no node serves slot {slot}")
        return port

    def queue_per_node(self, prefix: str) -> list[str]:
        """Tagged queue names ``{<prefix><n>}``, one served by each primary (in port order)."""
        table = self._slots()
        found: dict[int, str] = {}
        for i in range(100_000):
            name = f"{{{prefix}{i}}}"
            slot = key_slot(name.encode())
            found.setdefault(next(p for start, end, p in table if start <= slot <= end), name)
            if len(found) == len(self.ports):
                return [found[p] for p in sorted(found)]
        raise LookupError("no tag found for every node")

    def start(self, timeout: float = 30.0) -> None:
        """Start the nodes, create the cluster and return once every node says it is ok."""
        exe, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if exe is None or cli is None:
            raise RuntimeError("redis-server is not installed: apt-get install redis-server (.ci/run does)")
        for port in self.ports:
            node_dir = self.dir / str(port)
            node_dir.mkdir(parents=True, exist_ok=True)
            args = [exe, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(node_dir), "--save", ""]
            args += ["--appendonly", "no", "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            args += ["--cluster-node-timeout", "2000", "--daemonize", "no", "--loglevel", "warning"]
            args += ["--cluster-require-full-coverage", "yes" if self.full_coverage else "no"]
            self._args[port] = args
            self.procs.append(subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + timeout
        self._wait(deadline, "the nodes to listen", lambda r: bool(r.ping()))
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports), "--cluster-replicas", "0"]
        subprocess.run([*create, "--cluster-yes"], check=True, capture_output=True, timeout=30)
        self._wait(deadline, "the cluster to be ok", lambda r: r.cluster("INFO").get("cluster_state") == "ok")

    def _wait(self, deadline: float, what: str, ok: Any) -> None:
        def every_node_is_ok() -> bool:
            exited = [port for port, proc in zip(self.ports, self.procs, strict=True) if proc.poll() is not None]
            if exited:
                raise RuntimeError(f"the cluster node(s) on port(s) {exited} exited while waiting for {what}")
            return all(ok(redis.Redis(port=p, socket_timeout=1, decode_responses=True)) for p in self.ports)

        _poll(deadline, what, every_node_is_ok, (redis.exceptions.RedisError,))

    def stop(self) -> None:
        for proc in self.procs:
            stop_process(proc, timeout=5)
        self.procs.clear()


def _poll(deadline: float, what: str, check: Any, errors: tuple[type[Exception], ...]) -> None:
    """Call ``check`` every 50 ms until it returns true (one of ``errors``: not yet); a
    ``RuntimeError`` naming ``what`` once ``deadline`` (``time.monotonic()``) has passed."""
    while True:
        try:
            if check():
                return
        except errors:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)  # polling with a deadline


def stop_process(proc: subprocess.Popen[bytes], timeout: float = 15.0) -> int:
    """SIGTERM ``proc`` and wait for it; SIGKILL it if it has not exited within ``timeout``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    return int(proc.returncode)


class InProcessWorkers:
    """Run asyncjobs workers inside the running event loop, e.g. in a test::

    workers = InProcessWorkers()
    await workers.start([my_job], settings=Settings(redis_url=url))
    ...
    await workers.close()   # bounded: a worker that cannot stop raises TimeoutError
    """

    def __init__(self) -> None:
        self._started: list[tuple[Worker, asyncio.Task[None]]] = []

    async def start(
        self,
        functions: Registry | Iterable[JobFunction[Any, Any]],
        *,
        settings: Settings,
        cron_jobs: Sequence[CronJob] = (),
        **overrides: Any,
    ) -> Worker:
        """Start a worker for ``functions`` (signals left alone) and return it."""
        registry = functions if isinstance(functions, Registry) else Registry(functions)
        cls = worker_settings(registry, settings=settings, cron_jobs=cron_jobs)
        pool = create_broker(settings.redis_url, job_expiry=settings.job_expiry)
        worker = build_worker(cls, {"handle_signals": False, **overrides}, pool)
        self._started.append((worker, asyncio.get_running_loop().create_task(worker.async_run())))
        return worker

    async def close(self, timeout: float = 30.0) -> None:
        """Stop and close every worker started here."""
        async with asyncio.timeout(timeout):
            for worker, task in self._started:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
                await worker.close()
        self._started.clear()
