"""The public API's static types, checked by mypy in a subprocess: a usage file must pass
``mypy --strict`` (with ``assert_type`` checks of what enqueueing returns), and a file of misuse
must fail on exactly the lines marked ``# error``."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKS = Path(__file__).parent / "typing_checks"


def mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_usage_type_checks_strictly() -> None:
    p = mypy(CHECKS / "usage.py")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Success: no issues found in 1 source file" in p.stdout


def test_misuse_fails_on_exactly_the_marked_lines() -> None:
    path = CHECKS / "errors.py"
    marked = {n for n, line in enumerate(path.read_text().splitlines(), 1) if line.endswith("# error")}
    p = mypy(path)
    assert p.returncode == 1, p.stdout + p.stderr
    reported = {int(m) for m in re.findall(rf"^{re.escape(str(path.relative_to(ROOT)))}:(\d+): error:", p.stdout, re.M)}
    assert len(marked) >= 8
    assert reported == marked, p.stdout
