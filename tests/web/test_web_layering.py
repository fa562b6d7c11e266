"""``web/`` reaches Redis only through the store and the client's public API: it imports no
``asyncjobs.keys`` (it builds no key) and no private (``_``-prefixed) name of ``asyncjobs``."""

from __future__ import annotations

import ast
from pathlib import Path

WEB = Path(__file__).resolve().parents[2] / "web"


def _imports(path: Path) -> list[tuple[str, str]]:
    """``(module, name)`` for every import in the file (name "" for ``import module``)."""
    out: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out += [(node.module, alias.name) for alias in node.names]
    return out


def test_web_imports_no_keys_and_no_private_names() -> None:
    files = sorted(WEB.rglob("*.py"))
    assert len(files) > 10
    bad = []
    for path in files:
        for module, name in _imports(path):
            if not module.startswith("asyncjobs"):
                continue
            keys = module == "asyncjobs.keys" or (module == "asyncjobs" and name == "keys")
            private = name.startswith("_") or any(part.startswith("_") for part in module.split("."))
            if keys or private:
                bad.append(f"{path.relative_to(WEB.parent)}: from {module} import {name}")
    assert bad == []


def test_the_check_sees_what_it_forbids(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("from asyncjobs import keys\nimport asyncjobs.keys\nfrom asyncjobs.client import _fill\n")
    assert _imports(sample) == [("asyncjobs", "keys"), ("asyncjobs.keys", ""), ("asyncjobs.client", "_fill")]
