"""Fixtures only. Integration tests use a real redis-server started here on a free loopback
port with its own temp dir (so a test may stop and restart it); unit tests use fakeredis.

Tests are isolated without flushing anything, so they can run in parallel (``pytest -n auto``):
each pytest process (an xdist worker) starts its own session server, each test gets a logical
database of that server no other test has used, and a test that looks at the whole server
(pub/sub counts, INFO, CLIENT LIST, SCRIPT FLUSH timing) starts a server of its own
(``private_redis``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from arq.worker import Worker as ArqWorker
from arq.worker import get_kwargs

import asyncjobs
from asyncjobs import Settings, worker_settings
from asyncjobs.connections import Broker, create_broker
from asyncjobs.testing import InProcessWorkers, RedisServer

ROOT = Path(__file__).resolve().parents[1]
# logical databases of the session server: one per test that asks for ``redis_url`` (database
# 0 is left to code that takes ``redis_server.url``)
TEST_DATABASES = 10_000


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """This pytest process's redis-server (each xdist worker has its own)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"), databases=TEST_DATABASES)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _fresh_databases() -> Iterator[int]:
    return itertools.count(1)


@pytest.fixture
def redis_url(request: pytest.FixtureRequest, redis_server: RedisServer, _fresh_databases: Iterator[int]) -> str:
    """The URL of an empty database: one of the session server's that no other test has used,
    or, for a test marked ``own_redis``, database 0 of a server of the test's own."""
    if request.node.get_closest_marker("own_redis"):
        return str(request.getfixturevalue("private_redis")().url)
    db = next(_fresh_databases)
    if db >= redis_server.databases:
        pytest.fail(f"more than {db - 1} tests asked for redis_url in one session: raise TEST_DATABASES")
    return redis_server.url_of(db)


@pytest.fixture
def queue_name() -> str:
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
async def broker(redis_url: str) -> AsyncIterator[Broker]:
    b = create_broker(redis_url)
    yield b
    await b.aclose(close_connection_pool=True)


@pytest.fixture
async def client(redis_url: str) -> AsyncIterator[asyncjobs.Client]:
    async with asyncjobs.connect(redis_url) as c:
        yield c


@pytest.fixture
async def start_worker(redis_url: str) -> AsyncIterator[Callable[..., Any]]:
    """``await start_worker(functions, **options)`` runs an in-process asyncjobs Worker on the
    test Redis; every worker started is closed at teardown (bounded, so a worker that cannot
    close fails the test instead of hanging the suite)."""
    workers = InProcessWorkers()

    async def start(functions: Any, *, cron_jobs: Any = (), settings: Settings | None = None, **overrides: Any) -> Any:
        s = settings or Settings(redis_url=redis_url, lease=2.0, poll_delay=0.5)
        return await workers.start(functions, settings=s, cron_jobs=cron_jobs, **overrides)

    yield start
    await workers.close()


@pytest.fixture
def cli_env(redis_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOBS_")}
    # the CLI tests drive the example jobs, which a deployment serves only when asked to
    env.update(REDIS_URL=redis_url, PYTHONPATH=str(ROOT), ASYNCJOBS_EXAMPLES="1")
    return env


@pytest.fixture
def spawn(cli_env: dict[str, str]) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start a subprocess in the repo root with the test Redis in its environment; killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def run(*args: str, env: dict[str, str] | None = None, **kw: Any) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(list(args), cwd=ROOT, env={**cli_env, **(env or {})}, **kw)
        procs.append(p)
        return p

    yield run
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


PY = sys.executable


@pytest.fixture
def rel_workers(tmp_path: Path, redis_url: str) -> Iterator[Any]:
    """Fault tests: a :class:`reliability_support.Workers` on the shared test Redis and a queue of
    its own; every worker subprocess is killed at teardown."""
    from reliability_support import Workers

    w = Workers(tmp_path, redis_url)
    yield w
    w.close()


@pytest.fixture
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisServer]]:
    """``private_redis(password=None, start=True)``: a redis-server of the test's own, to stop,
    restart or protect with a password; stopped at teardown (list it before ``start_worker``,
    so workers are closed while it still runs)."""
    servers: list[RedisServer] = []

    def make(password: str | None = None, start: bool = True) -> RedisServer:
        s = RedisServer(tmp_path_factory.mktemp("private-redis"), password=password)
        servers.append(s)
        if start:
            s.start()
        return s

    yield make
    for s in servers:
        s.stop()


@pytest.fixture
async def plain_arq_worker(redis_url):
    """An in-process plain ``arq.worker.Worker`` built the way ``arq settings.WorkerSettings`` builds it."""
    workers = []

    async def start(functions, **options):
        cls = worker_settings(functions, settings=Settings(redis_url=redis_url, poll_delay=0.05), **options)
        w = ArqWorker(**{**get_kwargs(cls), "handle_signals": False})
        assert type(w) is ArqWorker
        task = asyncio.get_running_loop().create_task(w.async_run())
        workers.append((w, task))
        return w

    yield start
    for w, task in workers:
        # let arq's loop end by itself (burst mode ends once the queue is empty): cancelling
        # it mid-pipeline can leave a redis-py pipeline unclosed
        w.burst = True
        try:
            async with asyncio.timeout(10):
                await asyncio.shield(task)
        finally:
            if not task.done():
                task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if w._pool is not None:  # arq's own close() calls redis-py's deprecated close()
            await w._pool.aclose(close_connection_pool=True)
