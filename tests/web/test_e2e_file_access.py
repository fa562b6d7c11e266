"""The example jobs are a demo: a deployment does not serve them unless asked, and a job that
opens files reads nothing outside its data directory. Attacks over HTTP against real
``asyncjobs dev`` and ``asyncjobs web`` + ``asyncjobs worker`` subprocesses."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from web_support import ROOT, error_of

from asyncjobs.errors import truncate
from asyncjobs.testing import RedisServer

CANARY = "canary-" + uuid.uuid4().hex  # in the servers' environment: must never come back


def make_tree(tmp_path: Path) -> tuple[Path, list[str]]:
    """A data directory with one good CSV and a symlink leading out; the attack paths."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "good.csv").write_text("a,b\n1,2\n3,4\n")
    (outside / "secret.csv").write_text(f"{CANARY}-header,x\n1,2\n")
    (data / "leak.csv").symlink_to(outside / "secret.csv")
    attacks = [
        "/proc/self/environ",
        "/etc/passwd",
        str(ROOT / "settings.py"),
        str(outside / "secret.csv"),
        "../outside/secret.csv",
        "leak.csv",
        "missing.csv",
        "/no/such/file.csv",
    ]
    return data, attacks


async def run_csv(s: aiohttp.ClientSession, base: str, path: str) -> tuple[int, str, dict[str, Any]]:
    """POST a process_csv job for ``path``; ``(status, every response text, final body)``."""
    async with s.post(base + "/api/jobs", json={"function": "process_csv", "args": [path]}) as r:
        text, body = await r.text(), await r.json()
        if r.status != 202:
            return r.status, text, body
    async with s.get(f"{base}/api/jobs/{body['job_id']}/result", params={"timeout": "20"}) as r:
        assert r.status == 200, await r.text()
        return 200, text + await r.text(), await r.json()


async def assert_nothing_leaks(base: str, data: Path, attacks: list[str], secrets: list[str]) -> None:
    messages = set()
    async with aiohttp.ClientSession() as s:
        status, _, good = await run_csv(s, base, "good.csv")
        assert status == 200 and good["status"] == "complete" and good["result"]["rows"] == 2, good
        for path in attacks:
            status, text, body = await run_csv(s, base, path)
            for secret in (*secrets, CANARY, "root:", "REDIS_URL", "WorkerSettings", str(data)):
                assert secret not in text, (path, secret, text[:400])
            if status != 200:  # refused before it ran
                assert 400 <= status < 500, (path, status, text)
                continue
            assert body["status"] == "failed" and body["result"] is None, (path, body)
            assert body["error"]["type"].endswith("PathNotAllowed"), (path, body["error"])
            messages.add(body["error"]["message"].replace(repr(truncate(path)), "<path>"))
    assert len(messages) == 1, messages  # missing inside and forbidden outside look the same


@pytest.mark.slow
async def test_dev_reads_no_file_outside_its_data_dir(start_server: Any, tmp_path: Path) -> None:
    data, attacks = make_tree(tmp_path)
    server = start_server("dev", env={"ASYNCJOBS_DATA_DIR": str(data), "SOME_SECRET": CANARY})
    await server.wait_ready()
    await assert_nothing_leaks(server.base, data, attacks, [])


@pytest.mark.slow
async def test_web_and_worker_serve_no_example_job_by_default(
    start_server: Any, private_redis: Any, tmp_path: Path, server_env: dict[str, str]
) -> None:
    password = "pw-" + uuid.uuid4().hex
    redis = private_redis(password=password)
    data, attacks = make_tree(tmp_path)
    env = {**server_env, "REDIS_URL": redis.url, "ASYNCJOBS_DATA_DIR": str(data), "SOME_SECRET": CANARY}
    server = start_server("web", env=env)
    await server.wait_ready()
    async with aiohttp.ClientSession() as s:
        for path in attacks:
            async with s.post(server.base + "/api/jobs", json={"function": "process_csv", "args": [path]}) as r:
                assert r.status == 404 and error_of(await r.json())[0] == "unknown_function"
        async with s.get(server.base + "/api/functions") as r:
            assert "process_csv" not in await r.text()
    # the worker of such a deployment refuses to start with nothing to run, in one clear line
    worker = subprocess.run(
        [sys.executable, "-m", "asyncjobs", "worker"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    err = worker.stderr.decode()
    assert worker.returncode == 2, err
    assert "ASYNCJOBS_EXAMPLES=1" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
async def test_web_and_worker_with_examples_read_no_file_outside_the_data_dir(
    start_server: Any, spawn: Any, private_redis: Any, tmp_path: Path
) -> None:
    password = "pw-" + uuid.uuid4().hex
    redis: RedisServer = private_redis(password=password)
    data, attacks = make_tree(tmp_path)
    env = {
        "REDIS_URL": redis.url,
        "ASYNCJOBS_EXAMPLES": "1",
        "ASYNCJOBS_DATA_DIR": str(data),
        "SOME_SECRET": CANARY,
    }
    spawn(sys.executable, "-m", "asyncjobs", "worker", env=env)
    server = start_server("web", env=env)
    await server.wait_ready()
    await assert_nothing_leaks(server.base, data, attacks, [password])
