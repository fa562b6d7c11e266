"""Fuzz the API against its own OpenAPI document: no 5xx, no response that breaks the schema.

The app runs in a thread of its own (schemathesis' calls are blocking) on a private
in-memory broker, with a token, and no worker (jobs stay queued; waits are clamped)."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from web_support import TOKEN, free_port

from asyncjobs import Registry, Settings
from asyncjobs.examples import FUNCTIONS
from web.app import create_app
from web.openapi import document

SETTINGS = Settings(redis_url=f"memory://fuzz-{uuid.uuid4().hex}", api_token=TOKEN)
APP = create_app(SETTINGS, Registry(FUNCTIONS))
schema = schemathesis.openapi.from_dict(document(APP)).exclude(path="/api/jobs/{id}/events")
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    port = free_port()
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(APP)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(20), "the fuzz server did not start"
    yield f"http://127.0.0.1:{port}"
    loop.call_soon_threadsafe(loop.stop)
    thread.join(20)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_api_conforms_to_its_openapi(case: Any, base_url: str) -> None:
    timeout = (case.query or {}).get("timeout")
    if isinstance(timeout, int | float) and timeout > 0.2:
        case.query["timeout"] = 0.2  # valid waits on never-finishing jobs: keep the run short
    response = case.call_and_validate(
        base_url=base_url, headers={"Authorization": f"Bearer {TOKEN}"}, checks=CHECKS, timeout=10
    )
    assert response.status_code < 500
