"""``asyncjobs enqueue --wait``: what it waits for, progress with retries, ``--timeout``; and
the warning for a queue no worker serves (CLI and Python client)."""

from __future__ import annotations

import asyncio
import logging
import re
import sys
from pathlib import Path

import psutil

import asyncjobs
from asyncjobs.examples import count_words

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "asyncjobs")


async def cli(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    env = {**env, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"}
    return await asyncio.create_subprocess_exec(
        CLI, "--settings", "cli_support", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def read_until(stream: asyncio.StreamReader, needle: str, seen: list[str], timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            assert line, f"stream ended before {needle!r}: {seen}"
            seen.append(line)
            if needle in line:
                return


async def test_wait_shows_increasing_progress_and_retries(cli_env, client, start_worker):
    from cli_support import flaky_steps

    proc = await cli(cli_env, "enqueue", "flaky_steps", "--args", "[4]", "--job-id", "steps-1", "--wait",
                     "--progress", "plain", "--timeout", "30")  # fmt: skip
    assert proc.stderr is not None and proc.stdout is not None
    lines: list[str] = []
    await read_until(proc.stderr, "waiting for job steps-1 (flaky_steps) on queue default", lines)
    # the CLI follows the job's events before a worker takes it: a connection of the CLI's own
    # process (found by its local port) holds the asyncjobs:events:* pattern (PUBSUB NUMPAT
    # counts patterns, and other connections of this process may subscribe meanwhile)
    async with asyncio.timeout(10):
        while not await _pattern_subscribed(client, proc.pid):
            await asyncio.sleep(0.01)
    await start_worker([flaky_steps])
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    lines += err.decode().splitlines()
    assert proc.returncode == 0, lines
    assert out.decode().strip() == '"done on try 2"'
    assert any("0% waiting for a worker on queue default" in line for line in lines)
    assert any(re.search(r"20% try 1/4 step 1$", line) for line in lines), lines
    try2 = [line for line in lines if "try 2/4" in line]
    assert try2 and all("(last error: ValueError: boom on the first try)" in line for line in try2), lines
    percents = [int(line.split("%")[0]) for line in try2]
    assert percents == sorted(percents) and percents[-1] == 80 and len(set(percents)) >= 3, try2


async def _pattern_subscribed(client, pid: int) -> bool:
    """Whether a connection of process ``pid`` holds a pattern subscription."""
    ports = {c.laddr.port for c in psutil.Process(pid).net_connections(kind="tcp")}
    subscribers = await client.redis.client_list(_type="pubsub")
    return any(int(c.get("psub", 0)) > 0 and int(c["addr"].rsplit(":", 1)[1]) in ports for c in subscribers)


async def test_wait_on_a_queue_no_worker_serves_warns_and_times_out(cli_env, start_worker, queue_name):
    await start_worker([count_words])  # serves "default" only
    proc = await cli(cli_env, "enqueue", "count_words", "--args", '["a b"]', "--queue", queue_name,
                     "--wait", "--timeout", "1", "--progress", "plain")  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    lines = err.decode().splitlines()
    assert proc.returncode == 1, lines
    job_id = lines[0]
    warning = f"no worker serves queue {queue_name!r} (live workers serve: default); the job waits until one does"
    assert lines[1] == f"warning: {warning}"
    assert lines[2] == f"waiting for job {job_id} (count_words) on queue {queue_name} (up to 1s)"
    assert (
        lines[-1] == f"error: gave up waiting after 1s: job {job_id} is still queued on queue {queue_name}: {warning}"
    )
    assert "Traceback" not in err.decode() and out == b""


async def test_enqueue_onto_a_served_queue_does_not_warn(cli_env, start_worker, redis_url):
    await start_worker([count_words])
    proc = await cli(cli_env, "enqueue", "count_words", "--args", '["a b"]')
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0 and err == b"", err
    async with asyncjobs.connect(redis_url) as c:
        assert await c.job(out.decode().strip()).result(timeout=10) == 2


async def test_client_warns_once_per_unserved_queue_reading_at_most_once_a_minute(
    start_worker, client, queue_name, caplog, monkeypatch
):
    from asyncjobs import serving

    reads: list[str] = []
    read = serving.served

    async def counted(redis, queue):
        reads.append(queue)
        return await read(redis, queue)

    monkeypatch.setattr(serving, "served", counted)
    await start_worker([count_words])
    caplog.set_level(logging.WARNING, logger="asyncjobs")
    async with asyncjobs.connect(client.url) as c:
        await c.enqueue(count_words, "served")
        assert not caplog.records
        await c.enqueue(count_words.options(queue=queue_name), "nobody")
        [record] = caplog.records
        assert record.name == "asyncjobs.client" and record.levelno == logging.WARNING
        assert record.getMessage() == (
            f"no worker serves queue {queue_name!r} (live workers serve: default); the job waits until one does"
        )
        await c.enqueue(count_words.options(queue=queue_name), "again")
        await c.enqueue_many([asyncjobs.call(count_words.options(queue=queue_name), "many")])
        assert await c.unserved(queue_name) == record.getMessage()
        assert await c.unserved("default") is None
        assert reads == ["default", queue_name]  # cached: one read per queue, one warning
        assert len(caplog.records) == 1
