"""Helpers for composing the Lua scripts (:mod:`asyncjobs.scripts`) from snippets."""

from __future__ import annotations

import json
from string import Template


class Expr(str):
    """A Lua expression, written into a script as it is (not as a string literal)."""


def tagged(key: str) -> Expr:
    """Set-wide key (or key prefix) ``key`` as kept for the tag of the script's first key
    (:func:`asyncjobs.keys.tagged`): a script using it starts with :data:`TAG_PREAMBLE`."""
    return Expr(f"({json.dumps(key)} .. TAG)")


#: Defines ``TAG``: the hash tag of ``KEYS[1]`` with its braces (``''``: none), found as Redis
#: Cluster finds it (:func:`asyncjobs.keys.tag_of`). Every script using :func:`tagged` keys
#: starts with it (:func:`script`).
TAG_PREAMBLE = """local TAG = ''
do
  local k = KEYS[1] or ''
  local s = string.find(k, '{', 1, true)
  if s then
    local e = string.find(k, '}', s + 1, true)
    if e and e > s + 1 then TAG = string.sub(k, s, e) end
  end
end
"""


def with_constants(source: str, **constants: str | int) -> str:
    """``source`` with each ``$NAME`` replaced by a Lua literal of ``constants[NAME]`` (an
    :class:`Expr` as it is)."""

    def lua(v: str | int) -> str:
        return str(v) if isinstance(v, int | Expr) else json.dumps(v)

    return Template(source).substitute({k: lua(v) for k, v in constants.items()})


def script(source: str) -> str:
    """A whole script from composed ``source``: :data:`TAG_PREAMBLE` first if it uses ``TAG``."""
    return TAG_PREAMBLE + source if "TAG)" in source else source
