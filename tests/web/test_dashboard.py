"""The dashboard in headless Chromium (Debian's, via playwright) against real ``asyncjobs web``
and ``asyncjobs worker`` subprocesses on the real redis-server."""

from __future__ import annotations

import csv
import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest

from asyncjobs.testing import free_port
from tests.web.dashboard_support import (
    BROWSER_ARGS,
    CHROMIUM,
    PIPES,
    ROOT,
    call,
    start_web,
    start_worker,
    stop,
    write_settings,
)

expect = playwright_api.expect

# screenshots land in the (ignored) build folder; `make screenshots` copies them over docs/*.png
SHOTS = ROOT / "build" / "screenshots"
TOKEN = "s3cret-token"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):  # a failure, not a skip: the dashboard must be tested
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    yield pg
    context.close()


@pytest.fixture(autouse=True)
def _close_pipes() -> Iterator[None]:
    yield
    while PIPES:
        PIPES.pop().close()


@pytest.fixture
def env(tmp_path: Path, cli_env: dict[str, str]) -> dict[str, str]:
    write_settings(tmp_path)
    return {"PYTHONPATH": os.pathsep.join([str(tmp_path), cli_env["PYTHONPATH"]]), "ASYNCJOBS_DATA_DIR": str(tmp_path)}


@pytest.fixture
def stack(spawn: Callable[..., subprocess.Popen[bytes]], env: dict[str, str]) -> Callable[..., str]:
    """``stack(token=None)`` starts a web server and a worker; returns the base URL."""

    def start(token: str | None = None) -> str:
        e = {**env, **({"ASYNCJOBS_API_TOKEN": token} if token else {})}
        port = free_port()
        start_web(spawn, port, e)
        start_worker(spawn, e)
        return f"http://127.0.0.1:{port}"

    return start


def big_csv(path: Path, rows: int = 400_000) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "value", "label"])
        w.writerows((i, i * 0.5, f"row{i}") for i in range(rows))
    return path


def test_enqueue_form_then_live_progress_and_result(page: Any, stack: Callable[..., str], tmp_path: Path) -> None:
    base = stack()
    data = big_csv(tmp_path / "data.csv")
    page.goto(base + "/#/enqueue")
    page.select_option("#function", "process_csv")
    page.fill("#f-path", str(data))
    page.fill("#f-progress_every_s", "0.02")
    page.evaluate("window.__sameDocument = true")
    page.click("#enqueue button[type=submit]")
    expect(page).to_have_url(re.compile(r"#/job/[-0-9A-Za-z_]+$"))
    # the bar rises: some value strictly between 0 and 100 is shown before the end
    page.wait_for_function(
        "() => { const v = +document.querySelector('#progress')?.getAttribute('aria-valuenow');"
        " return v >= 20 && v < 100; }",
        timeout=20_000,
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "dashboard-job.png"))
    expect(page.locator("#result")).to_contain_text('"rows": 400000', timeout=30_000)
    expect(page.locator("[data-status]").first).to_have_text("complete")
    expect(page.locator("#progress")).to_have_attribute("aria-valuenow", "100")
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    expect(page.locator("#timeline")).to_contain_text("complete")

    page.goto(base + "/#/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("[data-card='Workers online']")).to_have_text("1")
    call(base, "POST", "/api/jobs", {"function": "count_words", "args": ["a b c"]})
    expect(page.locator("#feed li").first).to_contain_text("count_words", timeout=10_000)
    page.screenshot(path=str(SHOTS / "dashboard-overview.png"), full_page=True)


def test_failed_job_is_dead_lettered_and_retry_completes(page: Any, stack: Callable[..., str], tmp_path: Path) -> None:
    base = stack()
    flag = tmp_path / "flag"
    status, body = call(base, "POST", "/api/jobs", {"function": "flaky", "kwargs": {"flag": str(flag)}})
    assert status == 202
    job_id = body["job_id"]
    page.on("dialog", lambda d: d.accept())
    page.goto(base + "/#/dead")
    row = page.locator(f"tr[data-job='{job_id}']")
    expect(row).to_be_visible(timeout=15_000)  # the page reloads its list when a failure is seen live
    expect(row).to_contain_text("RuntimeError: flag file")
    flag.write_text("ok")
    row.locator("button.retry").click()
    expect(row).to_have_count(0)
    page.goto(base + f"/#/job/{job_id}")
    expect(page.locator("#result")).to_contain_text("recovered", timeout=15_000)


def test_retry_from_a_failed_jobs_page_runs_it_again(page: Any, stack: Callable[..., str], tmp_path: Path) -> None:
    base = stack()
    flag = tmp_path / "flag"
    _, body = call(base, "POST", "/api/jobs", {"function": "flaky", "kwargs": {"flag": str(flag)}})
    page.goto(base + f"/#/job/{body['job_id']}")
    expect(page.locator("[data-status]").first).to_have_text("failed", timeout=15_000)
    flag.write_text("ok")
    page.click("#retry")  # out of the dead letters, then the page shows the job again
    expect(page.locator("#result")).to_contain_text("recovered", timeout=15_000)
    expect(page.locator("#retry")).to_have_count(0)


def test_abort_running_job_from_its_page(page: Any, stack: Callable[..., str]) -> None:
    base = stack()
    _, body = call(base, "POST", "/api/jobs", {"function": "sleepy", "kwargs": {"seconds": 60}})
    page.on("dialog", lambda d: d.accept())
    page.goto(base + f"/#/job/{body['job_id']}")
    status = page.locator("[data-status]").first
    expect(status).to_have_text("in_progress", timeout=15_000)
    page.click("#abort")
    expect(status).to_have_text("aborted", timeout=15_000)
    expect(page.locator("#abort")).to_have_count(0)
    assert call(base, "GET", f"/api/jobs/{body['job_id']}")[1]["status"] == "aborted"


def test_token_required_before_any_data(page: Any, stack: Callable[..., str]) -> None:
    base = stack(token=TOKEN)
    assert call(base, "GET", "/api/dashboard/overview")[0] == 401
    assert call(base, "POST", "/api/dashboard/ticket")[0] == 401
    page.goto(base + "/#/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("[data-card]")).to_have_count(0)
    page.fill("#login input", "wrong")
    page.click("#login button")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("[data-card]")).to_have_count(0)
    page.fill("#login input", TOKEN)
    page.click("#login button")
    expect(page.locator("[data-card='Workers online']")).to_be_visible()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")  # the stream opened with a ticket


def test_script_argument_renders_as_text(page: Any, stack: Callable[..., str]) -> None:
    base = stack()
    payload = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    _, body = call(base, "POST", "/api/jobs", {"function": "count_words", "args": [payload]})
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(base + f"/#/job/{body['job_id']}")
    expect(page.locator("#args")).to_contain_text(payload)
    expect(page.locator("#result")).to_have_text("3", timeout=15_000)  # three words
    page.goto(base + "/#/jobs?q=script")
    expect(page.locator("main table")).to_contain_text("<script>alert(1)</script>")
    assert page.locator("main script, main img").count() == 0
    assert dialogs == []


def test_restart_shows_disconnected_then_recovers(page: Any, spawn: Any, env: dict[str, str]) -> None:
    port = free_port()
    web = start_web(spawn, port, env)
    base = f"http://127.0.0.1:{port}"
    page.goto(base + "/#/")
    conn = page.locator("#conn")
    expect(conn).to_have_attribute("data-state", "live")
    stop(web)
    expect(conn).to_have_attribute("data-state", "disconnected")
    expect(conn).to_have_text("disconnected")
    start_web(spawn, port, env)
    expect(conn).to_have_attribute("data-state", "live", timeout=15_000)
    expect(page.locator("[data-card='Queued']")).to_be_visible()


def test_screenshots_go_to_an_ignored_folder_not_docs() -> None:
    """Running the suite leaves the tracked docs/*.png alone; `make screenshots` refreshes them."""
    assert ROOT / "docs" not in SHOTS.parents
    ignored = subprocess.run(["git", "check-ignore", "-q", str(SHOTS / "dashboard-job.png")], cwd=ROOT)
    assert ignored.returncode == 0, f"{SHOTS} is not ignored by git"
    assert "\nscreenshots:" in (ROOT / "Makefile").read_text()


def test_badge_shows_degraded_while_redis_is_down(page: Any, spawn: Any, env: dict[str, str], own_redis: Any) -> None:
    """The event stream stays open while Redis is down; the badge must not say "live" then."""
    port = free_port()
    start_web(spawn, port, {**env, "REDIS_URL": own_redis.url})
    page.goto(f"http://127.0.0.1:{port}/#/")
    conn = page.locator("#conn")
    expect(conn).to_have_attribute("data-state", "live")
    own_redis.stop()
    expect(conn).to_have_attribute("data-state", "degraded", timeout=15_000)
    expect(conn).to_have_text("degraded")
    own_redis.start()  # the page keeps checking and comes back by itself
    expect(conn).to_have_attribute("data-state", "live", timeout=15_000)
