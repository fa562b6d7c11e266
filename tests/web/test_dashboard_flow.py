"""The dashboard's queue pause button in headless Chromium, against a real ``asyncjobs web`` on
the real redis-server: Pause flips the queue to paused in Redis and the button to Resume."""

from __future__ import annotations

from typing import Any

import playwright.sync_api as playwright_api

from asyncjobs.testing import free_port
from tests.web.dashboard_support import call, start_web
from tests.web.test_dashboard import browser, env, page  # noqa: F401  (fixtures)

expect = playwright_api.expect


def test_pause_and_resume_a_queue_from_the_overview(page: Any, spawn: Any, env: dict[str, str]) -> None:  # noqa: F811
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start_web(spawn, port, env)
    page.goto(base + "/")
    page.locator("#pause-default").click()
    expect(page.locator("#resume-default")).to_be_visible()
    status, body = call(base, "GET", "/api/queues")
    assert status == 200 and body["queues"][0]["paused"] is True
    page.locator("#resume-default").click()
    expect(page.locator("#pause-default")).to_be_visible()
    status, body = call(base, "GET", "/api/queues")
    assert body["queues"][0]["paused"] is False
