"""JSON in and out: the one encoder for responses, the error shape of DESIGN §3, and
:class:`ApiError` for handlers that need a status the error tree does not imply."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "details"}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def dumps(value: Any) -> bytes:
    """orjson with a ``str`` fallback, so results of any type can be shown."""
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response encoded with :func:`dumps`."""
    return web.Response(body=dumps(data), status=status, content_type="application/json", headers=headers)


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> web.Response:
    """A response in the API's error shape."""
    return json_response(
        {"error": {"code": code, "message": message, "details": details}}, status=status, headers=headers
    )
