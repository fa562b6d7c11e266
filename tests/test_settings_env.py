"""``settings.py`` as a deployment sees it: a ``.env`` file in the working directory, typos in
it rejected, and the start-up line of ``asyncjobs web`` / ``asyncjobs worker`` saying plainly
when the default Redis URL is in use. Real subprocesses, run from a directory of their own."""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest

import settings
from asyncjobs import Settings
from asyncjobs.testing import free_port

CLI = str(Path(sys.executable).parent / "asyncjobs")


def run_in(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)


def wait_for_line(proc: subprocess.Popen[bytes], needle: str, timeout: float = 30.0) -> str:
    """The first line of ``proc``'s stderr containing ``needle`` (fails at the deadline)."""
    assert proc.stderr is not None
    seen = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stderr, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(deadline - time.monotonic()):
                break
            chunk = proc.stderr.read1(65536)  # type: ignore[attr-defined]
            if not chunk:
                break
            seen += chunk
            for line in seen.decode(errors="replace").splitlines():
                if needle in line:
                    return line
    raise AssertionError(f"no line with {needle!r} on stderr; got:\n{seen.decode(errors='replace')}")


def start_up_line(cwd: Path, env: dict[str, str], args: list[str], needle: str) -> str:
    with subprocess.Popen([CLI, *args], cwd=cwd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL) as proc:
        try:
            return wait_for_line(proc, needle)
        finally:
            proc.kill()


@pytest.fixture
def bare_env(cli_env: dict[str, str]) -> dict[str, str]:
    """The CLI's environment without REDIS_URL (nor any ASYNCJOBS_* variable)."""
    return {k: v for k, v in cli_env.items() if k != "REDIS_URL"}


def test_a_dotenv_file_in_the_working_directory_is_read(tmp_path, bare_env, redis_url):
    (tmp_path / ".env").write_text(f"# deployment settings\nREDIS_URL={redis_url}\nASYNCJOBS_QUEUES=alpha, beta\n")
    p = run_in(tmp_path, bare_env, "queues")
    assert p.returncode == 0, p.stderr
    assert [line.split()[0] for line in p.stdout.splitlines()] == ["alpha", "beta"]


def test_the_environment_wins_over_the_dotenv_file(tmp_path, bare_env, redis_url):
    (tmp_path / ".env").write_text("REDIS_URL=redis://127.0.0.1:1/0\nASYNCJOBS_QUEUES=alpha\n")
    p = run_in(tmp_path, {**bare_env, "REDIS_URL": redis_url, "ASYNCJOBS_QUEUES": "gamma"}, "queues")
    assert p.returncode == 0, p.stderr
    assert [line.split()[0] for line in p.stdout.splitlines()] == ["gamma"]


@pytest.mark.parametrize("where", ["dotenv", "environment"])
def test_a_misspelled_variable_is_one_line_and_exit_2(tmp_path, bare_env, where):
    env = dict(bare_env)
    if where == "dotenv":
        (tmp_path / ".env").write_text("ASYNCJOBS_CONCURENCY=5\n")
    else:
        env["ASYNCJOBS_CONCURENCY"] = "5"
    p = run_in(tmp_path, env, "queues")
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: ") and "'ASYNCJOBS_CONCURENCY'" in lines[0]
    assert "did you mean 'ASYNCJOBS_CONCURRENCY'" in lines[0]


def test_a_bad_value_in_the_dotenv_file_names_the_variable(tmp_path, bare_env):
    (tmp_path / ".env").write_text("ASYNCJOBS_CONCURRENCY=many\n")
    p = run_in(tmp_path, bare_env, "queues")
    assert p.returncode == 2
    assert p.stderr.strip() == "error: ASYNCJOBS_CONCURRENCY 'many' is not an integer"


@pytest.mark.parametrize(
    ("command", "needle"),
    [
        (["web", "--port", "PORT"], "serving the API for Redis at "),
        (["worker"], "worker starting for Redis at "),
    ],
    ids=["web", "worker"],
)
def test_the_start_up_line_says_the_default_redis_url_is_used(tmp_path, bare_env, command, needle):
    args = [str(free_port()) if a == "PORT" else a for a in command]
    line = start_up_line(tmp_path, bare_env, args, needle)
    assert line.split(needle, 1)[1] == "redis://localhost:6379/0 (the default URL: set REDIS_URL to use another Redis)"


def test_the_start_up_line_names_a_set_url_without_its_password(tmp_path, bare_env):
    env = {**bare_env, "REDIS_URL": f"redis://:hunter2@127.0.0.1:{free_port()}/0"}
    line = start_up_line(tmp_path, env, ["worker"], "worker starting for Redis at ")
    assert "hunter2" not in line and "the default" not in line


def test_load_reads_the_process_environment_over_the_dotenv_file(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("ASYNCJOBS_CONCURRENCY=7\nASYNCJOBS_LEASE=2.5\nREDIS_URL=redis://cache:6380/1\n")
    for name in [n for n in os.environ if n.startswith("ASYNCJOBS_") or n == "REDIS_URL"]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("ASYNCJOBS_CONCURRENCY", "9")
    s = settings.load(env_file=tmp_path / ".env")
    assert (s.concurrency, s.lease, s.redis_url) == (9, 2.5, "redis://cache:6380/1")
    assert settings.load(env_file=tmp_path / "missing.env").concurrency == 9


def test_a_given_mapping_is_read_alone(monkeypatch):
    monkeypatch.setenv("ASYNCJOBS_CONCURRENCY", "9")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:1/0")
    assert settings.load({}) == Settings()
    assert settings.load({"REDIS_URL": ""}).redis_url == "redis://localhost:6379/0"  # empty: the default
