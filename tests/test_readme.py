"""Every Python snippet in the README runs as printed, imports included: each block is saved as a
script and run by a fresh interpreter, outside the checkout, against a redis-server of the
test's own with an ``asyncjobs worker`` (the example jobs of ``settings.py``) serving it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from asyncjobs.testing import stop_process

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[int, str]]:
    """(line number, source) of every ```python block of the README."""
    text = (ROOT / "README.md").read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(1)) for m in BLOCK.finditer(text)]


def test_the_readme_has_python_snippets() -> None:
    assert len(python_blocks()) >= 4


def test_every_python_snippet_in_the_readme_runs(private_redis, cli_env, spawn, tmp_path: Path) -> None:
    server = private_redis()
    env = {**cli_env, "REDIS_URL": server.url}
    worker = spawn(
        sys.executable, "-m", "asyncjobs", "worker", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    failures = []
    try:
        for line, source in python_blocks():
            script = tmp_path / f"readme_line_{line}.py"
            script.write_text(source)
            try:
                p = subprocess.run(
                    [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30
                )
            except subprocess.TimeoutExpired:
                failures.append(f"README.md:{line}: still running after 30 s")
                continue
            if p.returncode != 0:
                failures.append(f"README.md:{line}: exit {p.returncode}\n{p.stderr[-1500:]}")
    finally:
        stop_process(worker)
    assert not failures, "\n\n".join(failures)
