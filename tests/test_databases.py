"""The database number in a Redis URL is honoured everywhere: the CLI, the client and its
enqueue line, the web app, a worker process and its lease thread all keep to that database
(the test suite gives each test a database of its own and relies on it)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from typing import Any

import asyncjobs
from asyncjobs import JobStatus, Registry, Settings, keys
from asyncjobs.examples import FUNCTIONS, count_words, generate_report
from web.app import create_app

DB = 7
LEASE_S = 3.0  # renewed every second; the job below runs past it


async def lease_score(client: Any, job_id: str) -> float | None:
    score = await client.redis.zscore(keys.leases(keys.queue("default")), job_id)
    return None if score is None else float(score)


async def wait_until(check: Any, what: str, timeout: float = 15.0) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not (value := await check()):
        assert loop.time() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)
    return value


async def test_every_component_keeps_to_the_database_of_its_url(
    private_redis: Any, spawn: Any, cli_env: dict[str, str], aiohttp_client: Any
) -> None:
    server = private_redis()
    url = server.url_of(DB)
    cli = subprocess.run(
        [sys.executable, "-m", "asyncjobs", "enqueue", "count_words", "--args", '["from the cli"]'],
        env={**cli_env, "REDIS_URL": url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    api = await aiohttp_client(create_app(Settings(redis_url=url), Registry(FUNCTIONS)))
    posted = await api.post("/api/jobs", json={"function": "count_words", "args": ["from the web app"]})
    assert posted.status == 202, await posted.text()
    web_id = (await posted.json())["job_id"]
    async with asyncjobs.connect(url) as client:
        line = await client.enqueue(count_words, "from the enqueue line")
        slow = await client.enqueue(generate_report, "past its lease", sections=8, step_seconds=0.5)
        spawn(sys.executable, "-m", "asyncjobs", "worker", env={"REDIS_URL": url, "ASYNCJOBS_LEASE": str(LEASE_S)})
        first = await wait_until(lambda: lease_score(client, slow.id), "the slow job to start")
        # the lease thread's own connection renews the lease in this database before it lapses
        # (a lapsed lease is taken again by the claim, which would also move its score on)
        renewed_at = await wait_until(lambda: _renewed(client, slow.id, first), "the lease to be renewed")
        assert renewed_at < first, f"the lease was not renewed before it lapsed ({renewed_at - first:.0f} ms late)"
        assert (await slow.result(timeout=30))["sections"] == 8
        assert (await slow.info()).tries == 1
        for job_id, words in ((cli.stdout.strip().splitlines()[-1], 3), (web_id, 4), (line.id, 4)):
            assert await client.job(job_id).result(timeout=15) == words
            assert (await client.job(job_id).info()).status is JobStatus.COMPLETE
        assert set(await client.redis.info("keyspace")) == {f"db{DB}"}  # no other database was written


async def _renewed(client: Any, job_id: str, first: float) -> float | None:
    """The time (ms) at which the job's lease score is seen to have moved past ``first``."""
    score = await lease_score(client, job_id)
    return time.time() * 1000 if score is not None and score > first else None
