"""A worker's own Prometheus endpoint (``asyncjobs.metrics``): the ``ASYNCJOBS_METRICS_PORT``
setting, its validation, and a port already in use."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import urllib.request
import uuid

import pytest
from prometheus_client.parser import text_string_to_metric_families

import settings
from asyncjobs import ConfigError, Settings, connect
from asyncjobs.examples import count_words
from asyncjobs.testing import InProcessWorkers, free_port


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()


async def test_the_metrics_port_setting_serves_the_worker_metrics_until_it_closes(redis_url: str) -> None:
    port = free_port()
    queue = f"m-{uuid.uuid4().hex[:8]}"
    s = Settings(redis_url=redis_url, queues=(queue,), metrics_port=port)
    workers = InProcessWorkers()
    try:
        await workers.start([count_words], settings=s)
        async with connect(redis_url, queues=[queue], default_queue=queue) as client:
            handle = await client.enqueue(count_words, "a b")
            assert await handle.result(timeout=20) == 2
        text = await asyncio.to_thread(scrape, port)
    finally:
        await workers.close()
    samples = {
        (x.name, tuple(sorted(x.labels.items()))): x.value
        for family in text_string_to_metric_families(text)
        for x in family.samples
    }
    labels = (("function", "count_words"), ("outcome", "complete"), ("queue", queue))
    assert samples[("asyncjobs_job_duration_seconds_count", labels)] == 1
    with socket.socket() as sock:  # closing the worker released the port
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", port))


def test_the_metrics_port_setting_is_read_and_checked() -> None:
    assert settings.load({"ASYNCJOBS_METRICS_PORT": "9100"}).metrics_port == 9100
    assert settings.load({}).metrics_port is None
    for bad, needle in (("0", "ASYNCJOBS_METRICS_PORT: metrics_port must be a TCP port"), ("http", "not an integer")):
        with pytest.raises(ConfigError) as exc_info:
            settings.load({"ASYNCJOBS_METRICS_PORT": bad})
        assert needle in str(exc_info.value) and exc_info.value.key == "ASYNCJOBS_METRICS_PORT"


def test_a_metrics_port_in_use_is_a_configuration_error_exit_2(cli_env: dict[str, str]) -> None:
    with socket.socket() as busy:
        port = free_port()
        busy.bind(("0.0.0.0", port))
        busy.listen()
        p = subprocess.run(
            [sys.executable, "-m", "asyncjobs", "worker", "--metrics-port", str(port)],
            env=cli_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: cannot serve metrics on port {port}: ")
    assert "Traceback" not in p.stderr
