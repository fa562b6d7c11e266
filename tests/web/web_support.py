"""Helpers for the web tests: the error-shape check and real server subprocesses."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from asyncjobs.testing import RedisServer as RedisServer  # re-exported for the web tests
from asyncjobs.testing import free_port, stop_process

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"


def error_of(body: dict[str, Any]) -> tuple[str, str]:
    """``(code, message)`` of an error body, asserting its shape."""
    assert set(body) == {"error"}, body
    err = body["error"]
    assert isinstance(err["code"], str) and err["code"]
    assert isinstance(err["message"], str) and err["message"]
    assert "Traceback" not in err["message"]
    return err["code"], err["message"]


class Server:
    """A real ``asyncjobs`` subprocess serving HTTP on a free loopback port."""

    def __init__(self, args: list[str], env: dict[str, str], **popen: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "asyncjobs", *args, "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            **popen,
        )

    async def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as s:
            while time.monotonic() < deadline:
                assert self.proc.poll() is None, self.proc.communicate()[1].decode()[-2000:]
                with contextlib.suppress(aiohttp.ClientError):
                    async with s.get(self.base + "/healthz") as r:
                        if r.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise AssertionError(f"server on {self.base} did not come up")

    def stop(self) -> tuple[str, str]:
        stop_process(self.proc)
        out, err = self.proc.communicate()
        return out.decode(), err.decode()
