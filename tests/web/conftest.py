"""Fixtures for the HTTP API: apps on a private in-memory broker (optionally with an
in-process worker), and helpers for real ``asyncjobs`` server subprocesses."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from web_support import ROOT, RedisServer, Server

from asyncjobs import Registry, Settings
from asyncjobs.connections import Broker
from asyncjobs.datafiles import DataDir
from asyncjobs.examples import FUNCTIONS
from asyncjobs.testing import InProcessWorkers
from web.app import SSE_PING_S, create_app


@pytest.fixture
def memory_url() -> str:
    """A memory:// broker of this test's own."""
    return f"memory://{uuid.uuid4().hex}"


@pytest.fixture
async def run_worker(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    """``await run_worker(url)``: an in-process worker serving the example functions, with the
    test's ``tmp_path`` as the data directory jobs may read files from."""
    workers = InProcessWorkers()

    async def start(url: str, functions: Any = FUNCTIONS) -> Any:
        ctx = {"data_dir": DataDir(tmp_path)}
        return await workers.start(functions, settings=Settings(redis_url=url, lease=2.0), ctx=ctx)

    yield start
    await workers.close()


@pytest.fixture
async def make_api(aiohttp_client: Any, memory_url: str, run_worker: Any) -> Callable[..., Any]:
    """``await make_api(worker=False, **settings)``: an aiohttp test client on a fresh app
    (the example functions, or ``functions``; ``cron_jobs`` for the Cron page)."""

    async def make(
        *,
        worker: bool = False,
        url: str | None = None,
        broker: Broker | None = None,
        sse_ping: float | None = None,
        functions: Any = FUNCTIONS,
        cron_jobs: Any = (),
        **overrides: Any,
    ) -> Any:
        settings = Settings(redis_url=url or memory_url, **overrides)
        app = create_app(settings, Registry(functions), broker=broker, cron_jobs=cron_jobs)
        if sse_ping is not None:
            app[SSE_PING_S] = sse_ping
        if worker:
            await run_worker(settings.redis_url, functions)
        return await aiohttp_client(app)

    return make


@pytest.fixture
async def api(make_api: Any) -> Any:
    """The API with an in-process worker, on a private in-memory broker."""
    return await make_api(worker=True)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, free to stop and restart."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def server_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOBS_") and k != "REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT)
    return env


@pytest.fixture
def start_server(server_env: dict[str, str]) -> Iterator[Callable[..., Server]]:
    """``start_server(*args, env={...})``: an ``asyncjobs`` subprocess, stopped at teardown."""
    servers: list[Server] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Server:
        s = Server(list(args), {**server_env, **(env or {})})
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()
