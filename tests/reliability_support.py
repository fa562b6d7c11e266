"""Helpers for the fault tests: worker subprocesses with their own logs, and polling with a
deadline (never a bare sleep) for the conditions the tests wait on."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
SETTINGS_PATH = "reliability_app.WorkerSettings"


async def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0, interval: float = 0.02) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class WorkerProc:
    proc: subprocess.Popen[bytes]
    log: Path
    kind: str

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def signal(self, sig: int) -> None:
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


@dataclass
class Workers:
    """Starts worker subprocesses (``asyncjobs worker`` or plain ``arq``) on one Redis and queue."""

    tmp: Path
    redis_url: str
    queue: str = field(default_factory=lambda: "rel" + uuid.uuid4().hex[:8])
    env: dict[str, str] = field(default_factory=dict)
    procs: list[WorkerProc] = field(default_factory=list)
    #: the worker settings the subprocesses run (``module.WorkerSettings``, ``tests/`` importable)
    settings: str = SETTINGS_PATH

    @property
    def runlog(self) -> Path:
        return self.tmp / "runs.log"

    def environ(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOBS_")}
        env.update(
            REDIS_URL=self.redis_url,
            PYTHONPATH=f"{ROOT}{os.pathsep}{TESTS}",
            ASYNCJOBS_QUEUES=self.queue,
            RELIABILITY_RUNLOG=str(self.runlog),
            ASYNCJOBS_LEASE="2",
            ASYNCJOBS_POLL_DELAY="0.2",
            ASYNCJOBS_SHUTDOWN_GRACE="0",
        )
        env.update(self.env)  # (may replace any of those)
        env.update(extra)
        return env

    def start(self, kind: str = "asyncjobs", *args: str, **extra_env: str) -> WorkerProc:
        if kind == "asyncjobs":
            cmd = [sys.executable, "-m", "asyncjobs", "worker", self.settings, *args]
        else:
            cmd = [sys.executable, "-m", "arq", self.settings, *args]
        log = self.tmp / f"worker-{len(self.procs)}-{kind}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.environ(**extra_env), stdout=out, stderr=subprocess.STDOUT)
        wp = WorkerProc(proc, log, kind)
        self.procs.append(wp)
        return wp

    def start_web(self, port: int) -> WorkerProc:
        """``asyncjobs --settings reliability_app web`` on 127.0.0.1:``port`` (no token needed on
        loopback), with the workers' environment: the same Redis, queue and functions."""
        cmd = [sys.executable, "-m", "asyncjobs", "--settings", self.settings.split(".")[0], "web", "--port", str(port)]
        log = self.tmp / f"web-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=self.environ(), stdout=out, stderr=subprocess.STDOUT)
        wp = WorkerProc(proc, log, "web")
        self.procs.append(wp)
        return wp

    def close(self) -> None:
        """SIGTERM every worker (and any child a supervisor started), then SIGKILL what is left."""
        import psutil

        family: list[psutil.Process] = []
        for p in self.procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                parent = psutil.Process(p.proc.pid)
                family += [parent, *parent.children(recursive=True)]
        for proc in family:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.terminate()
        _, alive = psutil.wait_procs(family, timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        for p in self.procs:
            p.kill()
