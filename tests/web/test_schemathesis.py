"""Fuzz the whole app against its own OpenAPI document, with and without an API token, under
every schemathesis check: no 5xx, no response that breaks the schema, no valid request refused,
no invalid one accepted, auth enforced where declared and only there.

Each app runs in a thread of its own (schemathesis' calls are blocking) on a private in-memory
broker with no worker (jobs stay queued; waits are clamped). Event streams never end by
themselves, so the server ends the open ones every ``STREAM_END_S`` the way it does at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS, load_all_checks
from schemathesis.schemas import BaseSchema
from web_support import TOKEN

from asyncjobs import Registry, Settings
from asyncjobs.examples import FUNCTIONS
from asyncjobs.testing import free_port
from web.app import create_app
from web.openapi import document

STREAM_END_S = 0.05
MAX_WAIT_S = 0.2
MAX_EXAMPLES = 30
ENQUEUE_EXAMPLES = 60


def _app(token: str | None) -> web.Application:
    return create_app(Settings(redis_url=f"memory://fuzz-{uuid.uuid4().hex}", api_token=token), Registry(FUNCTIONS))


def _schemas(app: web.Application, headers: dict[str, str] | None) -> tuple[BaseSchema, BaseSchema]:
    """Every operation but the enqueue, and the enqueue alone: its body is a ``oneOf`` of some
    forty exact branches, which the coverage phase would spend minutes on (boundary and
    missing-field cases for each); it gets more fuzzed examples instead."""
    doc = document(app)
    rest = schemathesis.openapi.from_dict(doc).exclude(method="POST", path="/api/jobs")
    enqueue = schemathesis.openapi.from_dict(doc).include(method="POST", path="/api/jobs")
    enqueue.config.phases.coverage.enabled = False
    for schema in (rest, enqueue):
        if headers:
            schema.config.update(headers=headers)  # sent on every request: no case counts on its absence
    return rest, enqueue


AUTH = {"Authorization": f"Bearer {TOKEN}"}
APPS = {"token": _app(TOKEN), "open": _app(None)}
with_token, enqueue_with_token = _schemas(APPS["token"], AUTH)
without_token, enqueue_without_token = _schemas(APPS["open"], None)
load_all_checks()
CHECKS_ALL = CHECKS.get_all()
FUZZ = settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
FUZZ_ENQUEUE = settings(FUZZ, max_examples=ENQUEUE_EXAMPLES)


def _serve(app: web.Application) -> Iterator[str]:
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()

    async def end_streams() -> None:  # a ticker, like repeated shutdowns: open streams end
        while True:
            await asyncio.sleep(STREAM_END_S)
            await app.shutdown()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ticker = loop.create_task(end_streams())
        started.set()
        loop.run_forever()
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            loop.run_until_complete(ticker)
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(20), "the fuzz server did not start"
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(20)


@pytest.fixture(scope="module")
def token_url() -> Iterator[str]:
    yield from _serve(APPS["token"])


@pytest.fixture(scope="module")
def open_url() -> Iterator[str]:
    yield from _serve(APPS["open"])


def _check(case: Any, base_url: str, headers: dict[str, str] | None = None) -> Any:
    with contextlib.suppress(KeyError, TypeError, ValueError):
        if float(case.query["timeout"]) > MAX_WAIT_S:
            case.query["timeout"] = MAX_WAIT_S  # valid waits on never-finishing jobs: keep the run short
    return case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS_ALL, timeout=10)


def _check_enqueue(case: Any, base_url: str, headers: dict[str, str] | None = None) -> None:
    """A body the schema accepts is enqueued (or names a job id already taken)."""
    response = _check(case, base_url, headers)
    if case.meta.generation.mode.is_positive:
        taken = 409 if case.body.get("job_id") else 202
        assert response.status_code in (200, 202, taken), response.text


@with_token.parametrize()
@FUZZ
def test_api_with_token_conforms(case: Any, token_url: str) -> None:
    _check(case, token_url, AUTH)


@without_token.parametrize()
@FUZZ
def test_api_without_token_conforms(case: Any, open_url: str) -> None:
    _check(case, open_url)


@enqueue_with_token.parametrize()
@FUZZ_ENQUEUE
def test_enqueue_with_token_conforms(case: Any, token_url: str) -> None:
    _check_enqueue(case, token_url, AUTH)


@enqueue_without_token.parametrize()
@FUZZ_ENQUEUE
def test_enqueue_without_token_conforms(case: Any, open_url: str) -> None:
    _check_enqueue(case, open_url)
