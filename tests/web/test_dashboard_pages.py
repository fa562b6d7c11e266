"""The dashboard's Cron and Workers pages in headless Chromium, against real ``asyncjobs web``
and ``asyncjobs worker`` subprocesses on the real redis-server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import playwright.sync_api as playwright_api
import pytest
from croniter import croniter

from asyncjobs.testing import free_port
from tests.web.dashboard_support import call, start_web, start_worker
from tests.web.test_dashboard import _close_pipes, browser, env  # noqa: F401  (fixtures)

expect = playwright_api.expect


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:  # noqa: F811
    """A page in UTC and en-US, so the dates the dashboard formats can be computed here."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, timezone_id="UTC", locale="en-US")
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


def en_us(ms: int) -> str:
    """``new Date(ms).toLocaleString()`` in en-US, UTC."""
    d = datetime.fromtimestamp(ms / 1000, UTC)
    hour = d.hour % 12 or 12
    return f"{d.month}/{d.day}/{d.year}, {hour}:{d.minute:02}:{d.second:02} {'AM' if d.hour < 12 else 'PM'}"


def next_tick_ms(schedule: str) -> int:
    return int(croniter(schedule, datetime.now(UTC)).get_next(datetime).timestamp() * 1000)


def test_cron_page_shows_the_schedule_and_next_run(page: Any, spawn: Any, env: dict[str, str]) -> None:  # noqa: F811
    port = free_port()
    start_web(spawn, port, env)
    before = next_tick_ms("*/5 * * * *")
    page.goto(f"http://127.0.0.1:{port}/#/cron")
    row = page.locator("main table tbody tr")
    expect(row).to_have_count(1)
    cells = [c.replace("\u202f", " ") for c in row.locator("td").all_inner_texts()]
    after = next_tick_ms("*/5 * * * *")
    name, function, schedule, tz, next_run, last_run = cells
    assert (name, function, schedule, tz) == ("cron:cleanup", "cleanup", "*/5 * * * *", "UTC")
    assert next_run in {en_us(before), en_us(after)}
    assert 0 < before - time.time() * 1000 <= 5 * 60 * 1000 + 1000
    assert last_run == "not run yet"  # nothing ran its previous tick on this Redis queue


def test_workers_page_shows_a_live_worker_with_its_queues(page: Any, spawn: Any, env: dict[str, str]) -> None:  # noqa: F811
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    start_web(spawn, port, env)
    worker = start_worker(spawn, env, "--queues", "high,default", "--concurrency", "7")
    deadline = time.monotonic() + 20
    while not [w for w in call(base, "GET", "/api/workers")[1]["workers"] if w["pid"] == worker.pid]:
        assert time.monotonic() < deadline, "the worker did not register"
        assert worker.poll() is None, "the worker exited"
        time.sleep(0.05)
    page.goto(base + "/#/workers")
    row = page.locator("main table tbody tr", has_text=str(worker.pid))
    expect(row).to_have_count(1)
    host, pid, queues, concurrency, running, done, heartbeat = row.locator("td").all_inner_texts()
    assert (host, pid, queues) == (socket.gethostname(), str(worker.pid), "high, default")
    assert (concurrency, running, done) == ("7", "0", "0 / 0")
    assert heartbeat not in ("", "—")
