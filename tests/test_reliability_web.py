"""Redis unreachable when the web server starts: ``asyncjobs web`` keeps running, answers
/healthz 200 and 503 (with the JSON error shape) for /readyz and enqueue, logs the masked URL
and the next attempt, and recovers by itself once a redis-server comes up on that port;
``asyncjobs dev`` (API + in-process worker) recovers too, and then runs jobs."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from reliability_support import ROOT, TESTS, wait_for

from asyncjobs import keys
from asyncjobs.testing import free_port, stop_process

PASSWORD = "pw-never-logged"


class WebProc:
    """An ``asyncjobs`` server subprocess on a free loopback port; its output goes to a file
    (readable while it runs)."""

    def __init__(self, tmp: Path, args: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / f"{args[-1]}-{self.port}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "asyncjobs", *args, "--port", str(self.port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        stop_process(self.proc)


@pytest.fixture
def start_web(tmp_path: Path) -> Iterator[Any]:
    procs: list[WebProc] = []

    def start(args: list[str], **env: str) -> WebProc:
        base = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOBS_") and k != "REDIS_URL"}
        p = WebProc(tmp_path, args, {**base, "PYTHONPATH": f"{ROOT}{os.pathsep}{TESTS}", **env})
        procs.append(p)
        return p

    yield start
    for p in procs:
        p.stop()


async def _get(s: aiohttp.ClientSession, url: str) -> tuple[int, Any] | None:
    """Status and JSON body, or None while nothing listens yet."""
    with contextlib.suppress(aiohttp.ClientConnectionError):
        async with s.get(url) as r:
            return r.status, await r.json()
    return None


async def _post_job(s: aiohttp.ClientSession, base: str, body: dict[str, Any]) -> tuple[int, Any]:
    async with s.post(base + "/api/jobs", json=body) as r:
        return r.status, await r.json()


def _assert_redis_error(body: Any) -> None:
    assert set(body) >= {"error"}, body
    err = body["error"]
    assert err["code"] == "redis_unavailable"
    assert isinstance(err["message"], str) and "Redis is unreachable" in err["message"]
    assert PASSWORD not in str(body)


async def _unreachable_then_recover(server: WebProc, redis: Any, job: dict[str, Any]) -> dict[str, Any]:
    """The shared part: 503s while Redis is down, the log line, then recovery. Returns the job."""
    async with aiohttp.ClientSession() as s:
        health = await wait_for(lambda: _get(s, server.base + "/healthz"), "the server to listen", timeout=20)
        assert health == (200, {"status": "ok"})

        ready = await _get(s, server.base + "/readyz")
        assert ready is not None and ready[0] == 503
        _assert_redis_error(ready[1])
        assert ready[1]["checks"] == {"redis": "down"}

        status, body = await _post_job(s, server.base, job)
        assert status == 503, body
        _assert_redis_error(body)

        masked = f"redis://:***@127.0.0.1:{redis.port}/0"
        await wait_for(
            lambda: f"cannot reach Redis at {masked}" in server.output() and "next attempt in" in server.output(),
            "a log line with the masked URL and the next attempt",
            timeout=20,
        )
        assert server.proc.poll() is None  # still running, not crashed

        redis.start()  # the same port: nothing restarted, the server must notice by itself
        ready = await wait_for(
            lambda: _ready(s, server.base), "/readyz to turn 200 once Redis is up", timeout=30, interval=0.1
        )
        assert ready == {"status": "ready", "checks": {"redis": "ok"}}
        status, body = await _post_job(s, server.base, job)
        assert status == 202, body
        assert body["status"] == "queued" and body["function"] == job["function"]
        await wait_for(lambda: "connected to Redis at " + masked in server.output(), "the recovery log line")
        return body


async def _ready(s: aiohttp.ClientSession, base: str) -> Any:
    got = await _get(s, base + "/readyz")
    return got[1] if got is not None and got[0] == 200 else None


async def test_web_starts_while_redis_is_unreachable_then_recovers(private_redis, start_web):
    redis = private_redis(password=PASSWORD, start=False)  # a port of its own, nothing listening yet
    server = start_web(["--settings", "reliability_app", "web"], REDIS_URL=redis.url, ASYNCJOBS_QUEUES="relweb")
    body = await _unreachable_then_recover(server, redis, {"function": "rel_work", "args": [0.0]})

    import redis as redis_py

    r = redis_py.Redis(port=redis.port, password=PASSWORD)
    try:
        assert r.zscore(keys.queue("relweb"), body["job_id"]) is not None  # really enqueued in Redis
    finally:
        r.close()
    out = server.output()
    assert server.proc.poll() is None
    assert PASSWORD not in out and "Traceback" not in out


async def test_dev_worker_waits_for_unreachable_redis_then_runs_jobs(private_redis, start_web):
    redis = private_redis(password=PASSWORD, start=False)
    server = start_web(["dev"], REDIS_URL=redis.url)
    job = await _unreachable_then_recover(server, redis, {"function": "count_words", "args": ["a b c"]})

    url = f"{server.base}/api/jobs/{job['job_id']}/result"
    async with aiohttp.ClientSession() as s, s.get(url, params={"timeout": "20"}) as r:
        result = await r.json()
    assert r.status == 200, result
    assert result["status"] == "complete" and result["result"] == 3  # the in-process worker recovered
    out = server.output()
    assert PASSWORD not in out and "Traceback" not in out and "in-process worker stopped" not in out
