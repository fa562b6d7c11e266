"""Helpers for the dashboard browser tests: a settings module with test-only jobs, and
``asyncjobs web`` / ``asyncjobs worker`` subprocesses on the real redis-server."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from asyncjobs.testing import stop_process

ROOT = Path(__file__).resolve().parents[2]
SETTINGS_MODULE = "dash_settings"
SETTINGS_SOURCE = '''
import asyncio
import os

from asyncjobs import Registry, job, worker_settings
from asyncjobs.examples import FUNCTIONS
import settings as base


@job(retries=0)
async def flaky(ctx, flag: str) -> str:
    """Fails until the file ``flag`` exists."""
    if not os.path.exists(flag):
        raise RuntimeError(f"flag file {flag} is missing")
    return "recovered"


@job(timeout=120)
async def sleepy(ctx, seconds: float = 60.0) -> str:
    """Sleeps, reporting progress every 0.1 s."""
    steps = int(seconds * 10)
    for i in range(steps):
        await ctx.progress(100 * i / steps, f"step {i}")
        await asyncio.sleep(0.1)
    return "slept"


SETTINGS = base.SETTINGS
REGISTRY = Registry([*FUNCTIONS, flaky, sleepy])
CRON_JOBS = base.CRON_JOBS
WorkerSettings = worker_settings(REGISTRY, settings=SETTINGS, cron_jobs=CRON_JOBS, on_startup=base.startup)
'''

BROWSER_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
CHROMIUM = "/usr/bin/chromium"
PIPES: list[Any] = []  # stdout pipes of web servers, closed after each test


def write_settings(directory: Path) -> Path:
    (directory / f"{SETTINGS_MODULE}.py").write_text(SETTINGS_SOURCE)
    return directory


def start_worker(spawn: Any, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    """``asyncjobs worker`` on the dashboard tests' settings (output discarded)."""
    return spawn(
        sys.executable, "-m", "asyncjobs", "--settings", SETTINGS_MODULE, "worker", *args,
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


def start_web(spawn: Any, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """``asyncjobs web`` on ``port``; returns once it prints that it is listening."""
    proc = spawn(
        sys.executable,
        "-m",
        "asyncjobs",
        "--settings",
        SETTINGS_MODULE,
        "web",
        "--port",
        str(port),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    PIPES.append(proc.stdout)
    for line in proc.stdout:
        if b"listening on" in line:
            return proc
    raise RuntimeError(f"asyncjobs web exited with {proc.wait()}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    stop_process(proc)


def call(base: str, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
    """One HTTP request to the API; returns (status, decoded JSON)."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")
