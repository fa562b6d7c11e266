"""Helpers for composing the Lua scripts (:mod:`asyncjobs.scripts`) from snippets."""

from __future__ import annotations

import json
from string import Template


def with_constants(source: str, **constants: str | int) -> str:
    """``source`` with each ``$NAME`` replaced by a Lua literal of ``constants[NAME]``."""
    return Template(source).substitute({k: v if isinstance(v, int) else json.dumps(v) for k, v in constants.items()})
