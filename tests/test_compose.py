"""The production compose stack (docker-compose.yml, Dockerfile, .dockerignore, .env.example).

Docker is not needed: the files are parsed and checked property by property, and each
service's command line and health check are run here, with the compose environment (values
from .env.example) and the Redis host replaced by a local redis-server."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
import yaml

from asyncjobs import keys
from asyncjobs.testing import RedisServer, free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
VAR = re.compile(r"\$\$|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}|\$(?P<bare>\w+)")


def env_example() -> dict[str, str]:
    """``.env.example`` as compose reads a ``.env`` file (KEY=VALUE lines, # comments)."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def interpolate(value: Any, env: dict[str, str]) -> Any:
    """Compose's variable substitution: ``${X}``, ``${X:-default}``, ``${X:?error}``, ``$$``."""
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("name") or m.group("bare")
        op, arg = m.group("op"), m.group("arg")
        given = env.get(name)
        missing = given is None or (given == "" and op is not None and op.startswith(":"))
        if op and op.endswith("?") and missing:
            raise AssertionError(f"required variable {name} is not set: {arg}")
        if op and op.endswith("-") and missing:
            return str(arg)
        return given or ""

    return VAR.sub(sub, value)


def service(name: str) -> dict[str, Any]:
    """A service of docker-compose.yml with .env.example's values substituted."""
    return dict(interpolate(SERVICES[name], env_example()))


def to_bytes(size: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?", str(size).lower())
    assert m, f"not a size: {size!r}"
    return int(float(m.group(1)) * 1024 ** " kmg".index(m.group(2) or " "))


def flag(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {command}"
    return command[command.index(name) + 1]


# -- the files, property by property ---------------------------------------------------------


def test_redis_password_comes_from_env_and_reaches_web_and_worker() -> None:
    raw = (ROOT / "docker-compose.yml").read_text()
    secrets = env_example()
    assert secrets["REDIS_PASSWORD"] not in raw and secrets["ASYNCJOBS_API_TOKEN"] not in raw
    assert SERVICES["redis"]["command"][SERVICES["redis"]["command"].index("--requirepass") + 1].startswith(
        "${REDIS_PASSWORD:?"
    )
    password = secrets["REDIS_PASSWORD"]
    assert flag(service("redis")["command"], "--requirepass") == password
    for name in ("web", "worker"):
        assert service(name)["environment"]["REDIS_URL"] == f"redis://:{password}@redis:6379/0"
    # the web service listens beyond loopback in its container: it must get a token
    assert SERVICES["web"]["environment"]["ASYNCJOBS_API_TOKEN"].startswith("${ASYNCJOBS_API_TOKEN:?")
    with pytest.raises(AssertionError, match="REDIS_PASSWORD"):  # no silent empty password
        interpolate(SERVICES["worker"], {})


def test_env_example_is_shipped_and_env_is_ignored() -> None:
    names = set(re.findall(r"\$\{(\w+)", (ROOT / "docker-compose.yml").read_text()))
    assert names <= set(env_example()), f"not in .env.example: {names - set(env_example())}"
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT)
    assert ignored.returncode == 0, ".env is not in .gitignore"
    shipped = subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=ROOT)
    assert shipped.returncode == 1, ".env.example must not be ignored"


def test_every_service_restarts_has_limits_and_a_healthcheck() -> None:
    for name in SERVICES:
        s = service(name)
        assert s.get("restart") in ("always", "unless-stopped"), name
        limits = s["deploy"]["resources"]["limits"]
        assert float(limits["cpus"]) > 0, name
        assert to_bytes(limits["memory"]) >= 256 * 1024**2, name
        assert s["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        assert s["healthcheck"].get("disable") is not True, name


def test_redis_persists_and_never_evicts() -> None:
    s = service("redis")
    command = s["command"]
    assert flag(command, "--appendonly") == "yes"
    assert flag(command, "--maxmemory-policy") == "noeviction"
    maxmemory = to_bytes(flag(command, "--maxmemory"))
    assert 0 < maxmemory < to_bytes(s["deploy"]["resources"]["limits"]["memory"])
    assert "ports" not in s, "Redis must not be published beyond the compose network"


def test_images_are_pinned() -> None:
    assert re.fullmatch(r"redis:7\.\d+\.\d+-(alpine|bookworm)", SERVICES["redis"]["image"])
    froms = re.findall(r"^FROM\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert froms and all(re.fullmatch(r"python:3\.11\.\d+-slim(-bookworm)?", f) for f in froms), froms
    for path in ("docker-compose.yml", "Dockerfile"):
        assert "latest" not in (ROOT / path).read_text()


def test_the_image_runs_as_a_non_root_user() -> None:
    users = re.findall(r"^USER\s+(\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert users, "the Dockerfile has no USER"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Whether Docker leaves ``path`` out of the build context (last matching pattern wins)."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        if any(fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, pattern.replace("**/", "")) for p in prefixes):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        ".env",
        "build/screenshots/x.png",
        "dist/asyncjobs.whl",
        "asyncjobs.egg-info/PKG-INFO",
        "asyncjobs/__pycache__/cli.cpython-311.pyc",
        ".pytest_cache/v",
        ".mypy_cache/x",
        ".ruff_cache/x",
        "tests/conftest.py",
    ):
        assert dockerignored(path, patterns), f"{path} would be sent to the Docker daemon"
    copied = re.findall(r"^COPY\s+(.+?)\s+\S+$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    for source in " ".join(copied).split():
        assert not dockerignored(source, patterns), f"the Dockerfile copies {source}, which .dockerignore drops"
    assert not dockerignored("web/static/app.js", patterns)


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m)", duration)
    assert m, f"not a duration: {duration!r}"
    return float(m.group(1)) * (60 if m.group(2) == "m" else 1)


def test_the_worker_service_scales_and_drains() -> None:
    worker = service("worker")
    # `--scale worker=N`: no fixed name, no host port that a second replica would collide on
    assert "container_name" not in worker and "ports" not in worker
    # Docker's SIGKILL must come after the worker's own drain of running jobs
    grace = float(worker["environment"]["ASYNCJOBS_SHUTDOWN_GRACE"])
    assert seconds(worker["stop_grace_period"]) > grace


# -- the services, run here ------------------------------------------------------------------


def local_command(command: list[str], port: int | None = None) -> list[str]:
    """A compose command line run from this checkout: our venv's scripts, a local port."""
    exe = {"asyncjobs": str(BIN / "asyncjobs"), "python": sys.executable}
    out = [exe.get(command[0], command[0]), *command[1:]]
    if port is not None:
        out = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in out]
        out = [str(port) if a == "8000" else a for a in out]
    return out


def service_env(name: str, redis_port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ASYNCJOBS_", "REDIS"))}
    for key, value in service(name)["environment"].items():
        env[key] = str(value).replace("@redis:6379/", f"@127.0.0.1:{redis_port}/")
    return env


def healthcheck(name: str, env: dict[str, str], port: int | None = None) -> subprocess.CompletedProcess[str]:
    test = service(name)["healthcheck"]["test"]
    argv = ["sh", "-c", test[1]] if test[0] == "CMD-SHELL" else local_command(test[1:], port)
    return subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


def wait_healthy(name: str, env: dict[str, str], port: int | None = None, timeout: float = 40) -> None:
    deadline = time.monotonic() + timeout
    while True:
        p = healthcheck(name, env, port)
        if p.returncode == 0:
            return
        assert time.monotonic() < deadline, f"{name} never became healthy: {p.stdout}{p.stderr}"
        time.sleep(0.3)  # polling the health check with a deadline, as Docker does


@pytest.fixture
def compose_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """The redis service's own command line on a free loopback port."""
    port = free_port()
    command = [shutil.which("redis-server") or "redis-server", *service("redis")["command"][1:]]
    command += ["--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", ""]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, password=env_example()["REDIS_PASSWORD"], socket_connect_timeout=0.2)
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            assert proc.poll() is None and time.monotonic() < deadline, "the redis service's command did not start"
            time.sleep(0.05)  # polling with a deadline for the server to listen
    yield proc, port
    client.close()
    stop_process(proc)


def test_redis_service_command_and_its_healthcheck(compose_redis: tuple[subprocess.Popen[bytes], int]) -> None:
    _, port = compose_redis
    password = env_example()["REDIS_PASSWORD"]
    config = redis.Redis(port=port, password=password, decode_responses=True).config_get("*")
    assert config["appendonly"] == "yes" and config["maxmemory-policy"] == "noeviction"
    assert int(config["maxmemory"]) == to_bytes(flag(service("redis")["command"], "--maxmemory"))
    assert shutil.which("redis-cli"), "redis-cli is needed (Debian: redis-tools)"
    test = service("redis")["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    script = test[1].replace("redis-cli", f"redis-cli -p {port}")
    env = {**os.environ, **service("redis")["environment"]}

    def check(env: dict[str, str]) -> int:
        return subprocess.run(["sh", "-c", script], env=env, capture_output=True, timeout=30).returncode

    assert check(env) == 0
    assert check({**env, "REDISCLI_AUTH": "wrong"}) != 0
    assert check({k: v for k, v in env.items() if k != "REDISCLI_AUTH"}) != 0
    # why the check greps for PONG: a bare `redis-cli ping` exits 0 on an error reply
    bare = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True, timeout=30)
    assert bare.returncode == 0 and "NOAUTH" in bare.stdout


def api(url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = orjson.dumps(body) if body is not None else None
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as r:
        return orjson.loads(r.read())


def test_web_and_worker_services_run_and_pass_their_healthchecks(
    private_redis: Callable[..., RedisServer],
) -> None:
    server = private_redis(password=env_example()["REDIS_PASSWORD"])
    worker_env, web_env = service_env("worker", server.port), service_env("web", server.port)
    web_port = free_port()
    # before any worker runs, the worker's health check fails
    assert healthcheck("worker", worker_env).returncode == 1
    worker = subprocess.Popen(local_command(service("worker")["command"]), cwd=ROOT, env=worker_env)
    web = subprocess.Popen(local_command(service("web")["command"], web_port), cwd=ROOT, env=web_env)
    try:
        wait_healthy("worker", worker_env)
        wait_healthy("web", web_env, web_port)
        base, token = f"http://127.0.0.1:{web_port}", web_env["ASYNCJOBS_API_TOKEN"]
        job = api(f"{base}/api/jobs", token, {"function": "count_words", "args": ["a b c"]})
        assert api(f"{base}/api/jobs/{job['job_id']}/result?timeout=20", token)["result"] == 3
        assert stop_process(worker) == 0
        # a worker that has stopped no longer passes it
        assert healthcheck("worker", worker_env).returncode == 1
    finally:
        stop_process(worker)
        stop_process(web)


def test_worker_health_counts_only_this_hosts_fresh_workers(cli_env: dict[str, str], redis_url: str) -> None:
    """A container's check must not pass on another container's worker (``--any-host`` does)."""
    r = redis.Redis.from_url(redis_url)
    now_ms = int(time.time() * 1000)
    info = {"id": "elsewhere:1:a", "host": "elsewhere", "queues": ["default"], "running": 0, "concurrency": 1}
    r.set(keys.worker("elsewhere:1:a"), orjson.dumps(info), px=60_000)
    r.zadd(keys.WORKERS, {"elsewhere:1:a": now_ms})

    def check(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(BIN / "asyncjobs"), "worker-health", *args]
        return subprocess.run(cmd, cwd=ROOT, env=cli_env, capture_output=True, text=True, timeout=30)

    mine = check()
    assert mine.returncode == 1 and "no worker on host" in mine.stderr
    assert check("--any-host").returncode == 0
    # a registry entry whose heartbeat key has expired is not live
    r.delete(keys.worker("elsewhere:1:a"))
    assert check("--any-host").returncode == 1
