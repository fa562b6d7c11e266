"""End to end: real ``asyncjobs web`` / ``asyncjobs dev`` subprocesses over HTTP."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from web_support import ROOT, TOKEN, RedisServer


async def post_and_wait(base: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession(headers=headers) as s:
        async with s.post(base + "/api/jobs", json={"function": "count_words", "args": ["the quick brown fox"]}) as r:
            assert r.status == 202, await r.text()
            job = await r.json()
        async with s.get(f"{base}/api/jobs/{job['job_id']}/result", params={"timeout": "10"}) as r:
            return r.status, await r.json()


@pytest.mark.slow
async def test_readme_flow_dev_without_redis(start_server: Any) -> None:
    """`asyncjobs dev` with REDIS_URL unset: embedded broker, 202, then the result 4."""
    server = start_server("dev")
    await server.wait_ready()
    status, body = await post_and_wait(server.base)
    assert status == 200 and body["result"] == 4
    _, err = server.stop()
    assert "NOTHING PERSISTS" in err


@pytest.mark.slow
async def test_web_and_worker_subprocesses_on_real_redis(
    start_server: Any, redis_server: RedisServer, redis_url: str, spawn: Any
) -> None:
    env = {"REDIS_URL": redis_url, "ASYNCJOBS_API_TOKEN": TOKEN, "ASYNCJOBS_EXAMPLES": "1"}
    worker = spawn(sys.executable, "-m", "asyncjobs", "worker", env=env)
    server = start_server("web", env=env)
    await server.wait_ready()
    async with aiohttp.ClientSession() as s, s.get(server.base + "/api/queues") as r:
        assert r.status == 401
    status, body = await post_and_wait(server.base, {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and body["status"] == "complete" and body["result"] == 4
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as s:
        async with s.get(server.base + "/api/workers") as r:
            assert len((await r.json())["workers"]) == 1
        async with s.get(f"{server.base}/api/jobs/{body['job_id']}/events") as r:
            text = await r.text()
    assert "event: complete" in text
    assert worker.poll() is None


def test_web_refuses_public_bind_without_token(server_env: dict[str, str]) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "asyncjobs", "web", "--host", "0.0.0.0", "--port", "1"],
        cwd=ROOT,
        env=server_env,
        capture_output=True,
        timeout=30,
    )
    assert p.returncode == 2
    assert "ASYNCJOBS_API_TOKEN" in p.stderr.decode() and "Traceback" not in p.stderr.decode()
