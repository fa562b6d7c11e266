"""``memory://``, the embedded in-memory broker: fakeredis is an optional dependency (the ``dev``
extra). Without it, ``asyncjobs dev`` and every ``memory://`` command stop with one line that
names the install command, exit code 2. Its absence is simulated by a ``sitecustomize`` module
that makes ``import fakeredis`` fail in the subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from asyncjobs import memory
from asyncjobs.errors import ConfigError

CLI = str(Path(sys.executable).parent / "asyncjobs")

BLOCKER = """
import sys


class NoFakeredis:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] == "fakeredis":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)


sys.meta_path.insert(0, NoFakeredis())
"""


@pytest.fixture
def without_fakeredis(cli_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """``cli_env`` for a Python in which ``import fakeredis`` fails, as after a plain install."""
    (tmp_path / "sitecustomize.py").write_text(BLOCKER)
    env = {**cli_env, "PYTHONPATH": f"{tmp_path}:{cli_env['PYTHONPATH']}"}
    p = subprocess.run([sys.executable, "-c", "import fakeredis"], env=env, capture_output=True, text=True)
    assert p.returncode == 1 and "No module named 'fakeredis'" in p.stderr  # the blocker works
    return env


def assert_names_the_extra(p: subprocess.CompletedProcess[str]) -> None:
    assert p.returncode == 2, p.stderr
    errors = [line for line in p.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [
        "error: REDIS_URL memory:// (the embedded in-memory broker) needs fakeredis: "
        "pip install 'asyncjobs[dev]' (or set REDIS_URL to a real Redis)"
    ], p.stderr
    assert "Traceback" not in p.stderr


def test_dev_without_fakeredis_is_one_line_naming_the_extra(without_fakeredis: dict[str, str]) -> None:
    env = {k: v for k, v in without_fakeredis.items() if k != "REDIS_URL"}  # dev's default: memory://
    p = subprocess.run([CLI, "dev", "--port", "0"], env=env, capture_output=True, text=True, timeout=60)
    assert_names_the_extra(p)
    assert p.stderr.strip().count("\n") == 0, p.stderr  # the one line only: no banner, no listening


@pytest.mark.parametrize("command", [["queues"], ["worker"], ["web", "--port", "0"]])
def test_memory_url_without_fakeredis_exits_2(without_fakeredis: dict[str, str], command: list[str]) -> None:
    env = {**without_fakeredis, "REDIS_URL": "memory://"}
    p = subprocess.run([CLI, *command], env=env, capture_output=True, text=True, timeout=60)
    assert_names_the_extra(p)


def test_the_dev_extra_and_the_test_extra_carry_fakeredis_and_the_core_does_not() -> None:
    import tomllib

    project = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert not [d for d in project["dependencies"] if d.startswith("fakeredis")]
    assert [d for d in project["optional-dependencies"]["dev"] if d.startswith("fakeredis[lua]")]
    assert [d for d in project["optional-dependencies"]["test"] if d.startswith("fakeredis[lua]")]


async def test_memory_pools_of_one_name_share_one_server() -> None:
    import redis.asyncio

    a = redis.asyncio.Redis(connection_pool=memory.pool("memory://shared-test", None))
    b = redis.asyncio.Redis(connection_pool=memory.pool("memory://shared-test", None))
    other = redis.asyncio.Redis(connection_pool=memory.pool("memory://other-test", None))
    try:
        await a.set("k", "v")
        assert await b.get("k") == b"v"
        assert await other.get("k") is None
    finally:
        for r in (a, b, other):
            await r.aclose(close_connection_pool=True)


def test_missing_fakeredis_is_a_config_error_naming_redis_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fakeredis", None)  # import fakeredis raises ImportError
    with pytest.raises(ConfigError) as exc_info:
        memory.fakeredis_module()
    assert exc_info.value.key == "REDIS_URL" and memory.INSTALL in str(exc_info.value)
