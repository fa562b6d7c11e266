"""Security: no pickle by default, signed pickle when opted in, password-protected Redis, and
no secret in logs or error messages."""

from __future__ import annotations

import pickle
import sys

import pytest
from reliability_app import rel_work
from reliability_support import ROOT, TESTS, wait_for

import asyncjobs
from asyncjobs import BrokerUnavailable, Settings, deadletter, keys
from asyncjobs.errors import SerializationError
from asyncjobs.serialization import deserialize, serialize, signed_pickle
from asyncjobs.testing import free_port

unpickled: list[str] = []


def mark(what: str) -> str:
    unpickled.append(what)
    return what


class Exploit:
    """Unpickling this calls ``mark``: stands in for arbitrary code execution."""

    def __reduce__(self):
        return (mark, ("code ran",))


def test_default_codec_is_not_pickle():
    with pytest.raises(SerializationError):
        serialize(object())
    with pytest.raises(SerializationError):
        deserialize(pickle.dumps(Exploit()))
    assert unpickled == []


def test_signed_pickle_round_trips_and_refuses_unsigned_or_forged_payloads():
    dumps, loads = signed_pickle("a-long-random-secret-0123456789")
    value = {"when": {1, 2, 3}, "blob": b"\x00\x01"}
    assert loads(dumps(value)) == value
    forged = bytearray(dumps({"x": 1}))
    forged[-3] ^= 0xFF
    other_dumps, _ = signed_pickle("another-secret-entirely-987654")
    for bad in (pickle.dumps(Exploit()), bytes(forged), other_dumps(Exploit()), b"", b"\x80" * 40):
        with pytest.raises(SerializationError, match="without a valid signature"):
            loads(bad)
    assert unpickled == []
    with pytest.raises(SerializationError, match="too short"):
        signed_pickle("short")


async def test_worker_dead_letters_a_pickle_payload_without_running_it(client, start_worker):
    job_id = "evil-payload"
    raw = pickle.dumps({"t": 1, "f": "rel_work", "a": [Exploit()], "k": {}, "et": 0})
    await client.redis.set(keys.job(job_id), raw)
    await client.redis.zadd(keys.queue(keys.DEFAULT_QUEUE), {job_id: 1})
    await start_worker([rel_work])
    await wait_for(lambda: client.redis.exists(keys.dead(job_id)), "the payload to be dead-lettered", timeout=10)
    entry = await deadletter.get(client.redis, job_id)
    assert entry.raw == raw  # kept for inspection, never unpickled
    assert unpickled == []


async def test_password_protected_redis(private_redis, start_worker):
    server = private_redis(password="pw-" + "x" * 20)
    async with asyncjobs.connect(server.url) as client:
        await start_worker([rel_work], settings=Settings(redis_url=server.url, lease=2.0))
        handle = await client.enqueue(rel_work, 0.0)
        assert isinstance(await handle.result(timeout=10), int)
    wrong = server.url.replace(server.password, "wrong-password-123")
    with pytest.raises(BrokerUnavailable) as e:
        await asyncjobs.connect(wrong).open()
    assert "wrong-password-123" not in str(e.value) and "***" in str(e.value)
    with pytest.raises(BrokerUnavailable):
        await asyncjobs.connect(f"redis://127.0.0.1:{server.port}/0").open()  # no password


async def test_secrets_never_reach_logs_or_error_messages(tmp_path):
    import subprocess

    port = free_port()  # nothing listens here
    url = f"redis://:hunter2-redis-pw@127.0.0.1:{port}/0"
    env = {
        "REDIS_URL": url,
        "ASYNCJOBS_API_TOKEN": "tok-abcdef-123456",
        "PYTHONPATH": f"{ROOT}:{TESTS}",
        "PATH": "/usr/bin:/bin",
    }
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "asyncjobs", "worker", "reliability_app.WorkerSettings"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        await wait_for(lambda: log.read_text().count("next attempt") >= 2, "two retry log lines", timeout=20)
    finally:
        worker.kill()
        worker.wait(10)
    cli = subprocess.run(
        [sys.executable, "-m", "asyncjobs", "status", "abc"], cwd=ROOT, env=env, capture_output=True, timeout=60
    )
    with pytest.raises(BrokerUnavailable) as e:
        await asyncjobs.connect(url).open()
    text = log.read_text() + cli.stdout.decode() + cli.stderr.decode() + str(e.value) + repr(e.value)
    assert f"redis://:***@127.0.0.1:{port}/0" in log.read_text()
    assert cli.returncode != 0 and cli.stderr
    assert "hunter2" not in text
    assert "tok-abcdef" not in text
