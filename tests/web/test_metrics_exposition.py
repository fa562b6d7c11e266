"""Prometheus end to end: a real ``asyncjobs web`` and ``asyncjobs worker --metrics-port N`` on a
Redis of their own run jobs that complete, retry and dead-letter; both expositions are parsed
with prometheus_client's own parser and their values checked."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families
from web_support import ROOT, Server

from asyncjobs.testing import free_port, stop_process

APP = """
import os

from asyncjobs import Registry, job, worker_settings
from asyncjobs.backoff import Fixed
from settings import load


@job
async def m_ok(ctx, n: int) -> int:
    return n


@job(retries=1, backoff=Fixed(0.05))
async def m_flaky(ctx) -> str:
    if ctx.job_try == 1:
        raise ValueError("the first try fails")
    return "ok"


@job(retries=1, backoff=Fixed(0.05))
async def m_broken(ctx) -> None:
    raise ValueError("every try fails")


SETTINGS = load(os.environ)
REGISTRY = Registry([m_ok, m_flaky, m_broken])
WorkerSettings = worker_settings(REGISTRY, settings=SETTINGS)
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> tuple[dict[str, str], Samples]:
    """(family name -> type, (sample name, labels) -> value)."""
    types, samples = {}, {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for s in family.samples:
            samples[s.name, frozenset(s.labels.items())] = s.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def get_text(session: aiohttp.ClientSession, url: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            async with session.get(url) as r:
                assert r.status == 200
                return await r.text()
        except aiohttp.ClientConnectionError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)


async def run_jobs(session: aiohttp.ClientSession, base: str) -> None:
    calls = [("m_ok", [1]), ("m_ok", [2]), ("m_ok", [3]), ("m_flaky", []), ("m_broken", [])]
    ids = []
    for function, args in calls:
        async with session.post(f"{base}/api/jobs", json={"function": function, "args": args}) as r:
            assert r.status == 202, await r.text()
            ids.append((await r.json())["job_id"])
    statuses = []
    for job_id in ids:
        async with session.get(f"{base}/api/jobs/{job_id}/result?timeout=30") as r:
            statuses.append((await r.json())["status"])
    assert statuses == ["complete"] * 4 + ["failed"]


async def test_web_and_worker_metrics_after_jobs_that_complete_retry_and_dead_letter(
    tmp_path: Path, private_redis: Any, cli_env: dict[str, str]
) -> None:
    (tmp_path / "metrics_app.py").write_text(APP)
    redis = private_redis()
    env = {**cli_env, "REDIS_URL": redis.url, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    port = free_port()
    worker = subprocess.Popen(
        [sys.executable, "-m", "asyncjobs", "--settings", "metrics_app", "worker", "--metrics-port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    web = Server(["--settings", "metrics_app", "web"], env)
    try:
        await web.wait_ready()
        async with aiohttp.ClientSession() as session:
            await run_jobs(session, web.base)
            web_types, web_samples = parse(await get_text(session, f"{web.base}/metrics"))
            worker_types, worker_samples = parse(await get_text(session, f"http://127.0.0.1:{port}/metrics"))
    finally:
        web.stop()
        with contextlib.suppress(Exception):
            stop_process(worker)

    # the web app: totals of ended jobs are counters, read from Redis
    assert web_types["asyncjobs_queue_jobs_ended"] == "counter"
    ended = "asyncjobs_queue_jobs_ended_total"
    assert value(web_samples, ended, queue="default", outcome="complete") == 4
    assert value(web_samples, ended, queue="default", outcome="failed") == 1
    assert value(web_samples, ended, queue="default", outcome="aborted") == 0
    assert value(web_samples, "asyncjobs_dead_letters") == 1

    # the worker: a duration histogram by outcome, retries and dead letters, per function and queue
    assert worker_types["asyncjobs_job_duration_seconds"] == "histogram"
    assert worker_types["asyncjobs_job_retries"] == "counter"
    assert worker_types["asyncjobs_jobs_dead_lettered"] == "counter"
    count = "asyncjobs_job_duration_seconds_count"
    tries = {
        (function, outcome): value(worker_samples, count, function=function, queue="default", outcome=outcome)
        for function in ("m_ok", "m_flaky", "m_broken")
        for outcome in ("complete", "retrying", "failed")
    }
    assert tries == {
        ("m_ok", "complete"): 3,
        ("m_ok", "retrying"): 0,
        ("m_ok", "failed"): 0,
        ("m_flaky", "complete"): 1,
        ("m_flaky", "retrying"): 1,
        ("m_flaky", "failed"): 0,
        ("m_broken", "complete"): 0,
        ("m_broken", "retrying"): 1,
        ("m_broken", "failed"): 1,
    }
    inf = value(
        worker_samples,
        "asyncjobs_job_duration_seconds_bucket",
        function="m_ok",
        queue="default",
        **{"le": "+Inf", "outcome": "complete"},
    )
    assert inf == 3
    assert (
        0
        < value(
            worker_samples, "asyncjobs_job_duration_seconds_sum", function="m_ok", queue="default", outcome="complete"
        )
        < 3
    )
    retries = "asyncjobs_job_retries_total"
    assert value(worker_samples, retries, function="m_flaky", queue="default") == 1
    assert value(worker_samples, retries, function="m_broken", queue="default") == 1
    assert value(worker_samples, retries, function="m_ok", queue="default") == 0
    dead = "asyncjobs_jobs_dead_lettered_total"
    assert value(worker_samples, dead, function="m_broken", queue="default") == 1
    assert value(worker_samples, dead, function="m_flaky", queue="default") == 0
