"""The app's middlewares: errors to the JSON error shape (never a traceback), bearer-token
auth, the request-body limit, and request metrics."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from redis.exceptions import BusyLoadingError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from asyncjobs.errors import (
    BrokerUnavailable,
    ConfigError,
    DeadLetterNotFound,
    DuplicateJob,
    InvalidArguments,
    JobNotFound,
    SerializationError,
    UnknownFunction,
)
from web.responses import ApiError, error_response

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REDIS_DOWN = (BrokerUnavailable, RedisConnectionError, RedisTimeoutError, BusyLoadingError, ConnectionRefusedError)
REDIS_DOWN_MESSAGE = "Redis is unreachable; the request was not carried out. Retry when /readyz reports ready."
# paths anyone may read: liveness, readiness, and the dashboard shell (it holds no data)
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/dashboard/")
PUBLIC_EXACT = frozenset({"/", "/favicon.ico"})
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
}


def _mapped(e: Exception) -> tuple[int, str, str, Any] | None:
    """Status, code, message and details for one of our errors (None: not ours)."""
    if isinstance(e, ApiError):
        return e.status, e.code, e.message, e.details
    if isinstance(e, UnknownFunction):
        return 404, "unknown_function", str(e), {"function": e.function}
    if isinstance(e, JobNotFound):
        return 404, "job_not_found", str(e), {"job_id": e.job_id}
    if isinstance(e, DeadLetterNotFound):
        return 404, "dead_letter_not_found", str(e), {"job_id": e.job_id}
    if isinstance(e, InvalidArguments):
        return 422, "invalid_arguments", str(e), e.errors
    if isinstance(e, ConfigError):
        return 422, "invalid_value", str(e), {"field": e.key}
    if isinstance(e, DuplicateJob):
        return 409, "conflict", str(e), {"job_id": e.job_id}
    if isinstance(e, SerializationError):
        return 422, "unserializable", str(e), None
    if isinstance(e, REDIS_DOWN):
        return 503, "redis_unavailable", REDIS_DOWN_MESSAGE, {"reason": type(e).__name__}
    return None


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every error to ``{"error": {...}}`` with its status; log the unexpected ones."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.status < 400:
            raise
        headers = {k: v for k, v in e.headers.items() if k.lower() in ("allow", "www-authenticate")}
        code = HTTP_CODES.get(e.status, f"http_{e.status}")
        message = e.reason if e.status != 413 else "request body is too large"
        return error_response(e.status, code, message, headers=headers or None)
    except Exception as e:
        mapped = _mapped(e)
        if mapped is None:
            logger.exception("unhandled error on %s %s", request.method, request.path)
            return error_response(500, "internal_error", "internal server error; the server log has the details")
        status, code, message, details = mapped
        if status == 503:
            logger.warning("%s %s: Redis unreachable (%s)", request.method, request.path, e)
        return error_response(status, code, message, details)


def auth_middleware(token: str | None) -> Any:
    """Require ``Authorization: Bearer <token>`` on everything but the public paths."""
    expected = token.encode() if token else None

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None or request.path in PUBLIC_EXACT or request.path.startswith(PUBLIC_PREFIXES):
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
            raise ApiError(
                401,
                "unauthorized",
                "missing or wrong API token: send 'Authorization: Bearer <token>' "
                "with the value of ASYNCJOBS_API_TOKEN",
            )
        return await handler(request)

    return auth


def body_limit_middleware(max_bytes: int) -> Any:
    """Refuse a declared body over ``max_bytes`` before reading it; ``client_max_size``
    catches chunked bodies while they are read."""

    @web.middleware
    async def body_limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_bytes:
            raise ApiError(
                413,
                "body_too_large",
                f"request body of {request.content_length} bytes is over the "
                f"limit of {max_bytes} bytes (ASYNCJOBS_MAX_BODY_BYTES)",
                {"limit": max_bytes},
            )
        return await handler(request)

    return body_limit


def metrics_middleware(observe: Callable[[str, str, int, float], None]) -> Any:
    """Count requests by method, route template and status, and time them."""

    @web.middleware
    async def metrics(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as e:
            status = e.status
            raise
        finally:
            route = request.match_info.route.resource
            template = route.canonical if route is not None else "unmatched"
            observe(request.method, template, status, time.perf_counter() - start)

    return metrics
