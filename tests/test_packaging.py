"""The package as users get it: a wheel built from what the Dockerfile copies, installed (not
editable) in a fresh venv, serves every dashboard page with no failed request and no console
error. Editable installs read ``web/static`` from the checkout, so only this test sees what the
wheel leaves out."""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import playwright.sync_api as playwright_api
import pytest

from asyncjobs.testing import free_port, stop_process
from tests.web.dashboard_support import BROWSER_ARGS, CHROMIUM, ROOT, call

# building the wheel and installing it with its dependencies in a fresh venv takes minutes on a
# loaded machine; the first test of the module pays for it
pytestmark = pytest.mark.timeout(600)

JAVASCRIPT = {"text/javascript", "application/javascript"}  # aiohttp's table: the latter before Python 3.12
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


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the built wheel installed (its dependencies from the pip cache or
    PyPI, no extras); returns the venv's ``bin`` directory. Built once for this module."""
    tmp_path = tmp_path_factory.mktemp("installed")
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
    env.update(REDIS_URL=redis_url, ASYNCJOBS_EXAMPLES="1")  # the job page shows an example job
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


def test_installed_wheel_serves_the_dashboard_modules_as_javascript(web_url: str) -> None:
    page = urllib.request.urlopen(f"{web_url}/", timeout=30).read().decode()
    assert '<script type="module" src="/dashboard/static/app.js"></script>' in page
    for path in ("app.js", "js/api.js", "js/pages/enqueue.js"):  # the entry, a shared module, a page
        with urllib.request.urlopen(f"{web_url}/dashboard/static/{path}", timeout=30) as resp:
            assert resp.headers.get_content_type() in JAVASCRIPT, (path, resp.headers["Content-Type"])
            assert b"export " in resp.read() or path == "app.js"


def test_a_production_install_has_no_fakeredis_and_dev_names_the_extra(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCJOBS_", "PYTHON", "VIRTUAL_ENV", "REDIS_"))}
    probe = subprocess.run(
        [
            str(installed / "python"),
            "-c",
            "import importlib.util as u, asyncjobs; print(u.find_spec('fakeredis'), asyncjobs.__version__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.split() == ["None", importlib.metadata.version("asyncjobs")]
    version = subprocess.run([str(installed / "asyncjobs"), "--version"], capture_output=True, text=True, timeout=60)
    assert version.stdout == f"asyncjobs {importlib.metadata.version('asyncjobs')}\n"
    dev = subprocess.run(
        [str(installed / "asyncjobs"), "dev", "--port", "0"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dev.returncode == 2
    assert dev.stderr.strip().splitlines() == [
        "error: REDIS_URL memory:// (the embedded in-memory broker) needs fakeredis: "
        "pip install 'asyncjobs[dev]' (or set REDIS_URL to a real Redis)"
    ]


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
