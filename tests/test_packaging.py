"""The package as users get it: a wheel built from what the Dockerfile copies, installed (not
editable) in a fresh venv, serves every dashboard page with no failed request and no console
error. Editable installs read ``web/static`` from the checkout, so only this test sees what the
wheel leaves out."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest

from asyncjobs.testing import free_port, stop_process
from tests.web.dashboard_support import BROWSER_ARGS, CHROMIUM, ROOT, call

PAGES = ["#/", "#/jobs", "#/dead", "#/cron", "#/workers", "#/enqueue"]


def dockerfile_sources() -> list[str]:
    """The paths the Dockerfile copies into the image before ``pip install .``."""
    sources: list[str] = []
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        words = shlex.split(line)
        if words and words[0].upper() == "COPY":
            sources += [w for w in words[1:-1] if not w.startswith("--")]
    return sources


def build_wheel(tmp: Path) -> Path:
    """Copy the Docker build context (no stale ``build/`` from the checkout) and build a wheel."""
    src = tmp / "src"
    src.mkdir()
    for name in dockerfile_sources():
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, src / name)
    out = tmp / "dist"
    run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(src))
    (wheel,) = out.glob("asyncjobs-*.whl")
    return wheel


def run(*args: str, cwd: Path | None = None) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"{args} failed:\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture
def installed(tmp_path: Path) -> Path:
    """A fresh venv with the built wheel installed (its dependencies from the pip cache or
    PyPI); returns the venv's ``bin`` directory."""
    wheel = build_wheel(tmp_path)
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", str(venv))
    bin_dir = venv / "bin"
    run(str(bin_dir / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel))
    return bin_dir


@pytest.fixture
def web_url(installed: Path, tmp_path: Path, redis_url: str) -> Iterator[str]:
    """``asyncjobs web`` from the venv, run outside the checkout so nothing imports from it."""
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCJOBS_", "PYTHON", "VIRTUAL_ENV"))}
    env["REDIS_URL"] = redis_url
    env["ASYNCJOBS_EXAMPLES"] = "1"  # the test enqueues an example job, served only when asked
    port = free_port()
    proc = subprocess.Popen(
        [str(installed / "asyncjobs"), "web", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line.decode(errors="replace"))
            if "listening on" in lines[-1]:
                break
        else:
            pytest.fail(f"asyncjobs web exited with {proc.wait()}:\n{''.join(lines)}")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        if proc.stdout is not None:
            proc.stdout.close()


def problems_loading(browser: Any, url: str) -> list[str]:
    """Load ``url`` in a fresh page; every failed request, HTTP error and console error."""
    seen: list[str] = []
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.on("requestfailed", lambda r: seen.append(f"request failed: {r.url} {r.failure}"))
    page.on("response", lambda r: r.status >= 400 and seen.append(f"HTTP {r.status}: {r.url}"))
    page.on("console", lambda m: m.type == "error" and seen.append(f"console: {m.text}"))
    page.on("pageerror", lambda e: seen.append(f"page error: {e}"))
    try:
        page.goto(url, wait_until="networkidle")
        playwright_api.expect(page.locator("#main")).not_to_be_empty()
        playwright_api.expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        seen += [f"alert: {t}" for t in page.locator("[role=alert]").all_inner_texts()]
        return list(seen)  # before closing, which aborts the page's event stream
    finally:
        context.close()


def test_installed_wheel_serves_every_dashboard_page(web_url: str) -> None:
    if not os.path.exists(CHROMIUM):  # a failure, not a skip: the dashboard must be tested
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does)")
    status, body = call(web_url, "POST", "/api/jobs", {"function": "count_words", "args": ["a b c"]})
    assert status == 202, body
    pages = [*PAGES, f"#/job/{body['job_id']}"]
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
        try:
            found = {page: problems_loading(browser, f"{web_url}/{page}") for page in pages}
        finally:
            browser.close()
    assert {page: errors for page, errors in found.items() if errors} == {}
