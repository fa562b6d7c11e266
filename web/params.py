"""Reading path and query parameters: job ids, bounded numbers, page positions, filter text
and the JSON body."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from asyncjobs.client import check_job_id
from asyncjobs.errors import ConfigError
from web.responses import ApiError
from web.state import SETTINGS

# deeper JSON is refused: no job needs it, and orjson cannot encode past 255 levels
MAX_JSON_DEPTH = 64


def job_id(request: web.Request) -> str:
    """The ``{id}`` path segment, validated (422 if it cannot be a job id)."""
    raw = request.match_info["id"]
    try:
        return check_job_id(raw)
    except ConfigError as e:
        raise ApiError(422, "invalid_job_id", str(e), {"job_id": raw[:128]}) from None


def number(request: web.Request, name: str, default: float, low: float, high: float, *, integer: bool = False) -> Any:
    """Query parameter ``name`` as a number in ``[low, high]``; 422 naming it otherwise."""
    raw = request.query.get(name)
    if raw is None:
        return int(default) if integer else default
    try:
        value: float = int(raw) if integer else float(raw)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:  # also false for nan
        kind = "a whole number" if integer else "a number"
        raise ApiError(
            422,
            "invalid_parameter",
            f"query parameter {name}={raw[:40]!r} must be {kind} from {low:g} to {high:g}",
            {"parameter": name},
        )
    return value


def page_number(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    """Query parameter ``name`` as a paging position or size (the dashboard's lists): empty or
    missing is ``default``, a value beyond ``[low, high]`` is taken as the nearest bound; 400
    naming it unless it is ASCII digits (at most 15)."""
    raw = request.query.get(name, "")
    if not raw:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 15):  # int() also takes other scripts' digits
        raise ApiError(400, "bad_request", f"{name} must be a whole number (at most 15 digits)", {"parameter": name})
    return max(low, min(int(raw), high))


def text(request: web.Request, name: str, max_length: int = 200) -> str:
    """Query parameter ``name`` as text, trimmed and cut to ``max_length`` ("" if missing)."""
    return request.query.get(name, "").strip()[:max_length]


async def json_body(request: web.Request) -> Any:
    """The request body parsed as JSON; 400 if it is not JSON or nests deeper than
    :data:`MAX_JSON_DEPTH`, 408 if it does not arrive in time (413 if it is too large)."""
    limit = request.app[SETTINGS].body_timeout
    try:
        async with asyncio.timeout(limit):
            raw = await request.read()
    except TimeoutError:
        raise ApiError(
            408,
            "body_timeout",
            f"the request body did not arrive within {limit:g} s (ASYNCJOBS_BODY_TIMEOUT)",
            {"limit": limit},
        ) from None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, "malformed_json", f"the request body is not valid JSON: {e}", None) from None
    if _depth_over(value, MAX_JSON_DEPTH):
        raise ApiError(
            400,
            "json_too_deep",
            f"the request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep",
            {"max_depth": MAX_JSON_DEPTH},
        )
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """True if ``value`` nests containers more than ``limit`` levels deep (iterative: no
    recursion limit to hit)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False
