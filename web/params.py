"""Reading path and query parameters: job ids, bounded numbers, and the JSON body."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from asyncjobs.client import check_job_id
from asyncjobs.errors import ConfigError
from web.responses import ApiError


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


async def json_body(request: web.Request) -> Any:
    """The request body parsed as JSON; 400 if it is not JSON (413 if it is too large)."""
    raw = await request.read()
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ApiError(400, "malformed_json", f"the request body is not valid JSON: {e}", None) from None
