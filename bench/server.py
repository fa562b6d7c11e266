"""A private redis-server on a free loopback port (never the default 6379), without persistence
so the benchmark measures the engines, not the disk."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from asyncjobs.testing import RedisServer, free_port

__all__ = ["PrivateRedis", "free_port", "start_server", "wait_ready"]

ROOT = Path(__file__).resolve().parents[1]


def start_server(command: str, port: int, redis_url: str | None) -> subprocess.Popen[bytes]:
    """``asyncjobs <command> --port <port>`` (``web`` or ``dev``) from the checkout, with no
    ``ASYNCJOBS_*`` setting of the caller's and ``redis_url`` (none: dev's in-memory broker)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOBS_") and k != "REDIS_URL"}
    env["PYTHONPATH"] = str(ROOT)
    if redis_url:
        env["REDIS_URL"] = redis_url
    return subprocess.Popen(
        [sys.executable, "-m", "asyncjobs", command, "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_ready(base: str) -> None:
    """Until ``base``/readyz answers 200 (30 s at most)."""
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            try:
                async with s.get(base + "/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("server did not start")


class PrivateRedis:
    """``with PrivateRedis() as url:`` a redis-server of its own for one benchmark run."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="asyncjobs-bench-")
        self.server = RedisServer(self.dir.name, appendonly=False)
        self.port = self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> str:
        try:
            self.server.start()
        except RuntimeError as e:
            raise SystemExit(str(e)) from None
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.dir.cleanup()
