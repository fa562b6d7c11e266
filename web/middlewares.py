"""The app's middlewares: errors to the JSON error shape (never a traceback), the ``Host``
check (DNS rebinding), bearer-token auth (a stream ticket on the stream path only), the
cross-site request guards, the request-body limit, and request metrics."""

from __future__ import annotations

import hmac
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

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
from web.tickets import STREAM_PATH, check_ticket

logger = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

REDIS_DOWN = (BrokerUnavailable, RedisConnectionError, RedisTimeoutError, BusyLoadingError, ConnectionRefusedError)
REDIS_DOWN_MESSAGE = "Redis is unreachable; the request was not carried out. Retry when /readyz reports ready."
# paths anyone may read: liveness, readiness, and the dashboard shell and assets (no data)
PUBLIC_PREFIXES = ("/healthz", "/readyz", "/dashboard/static/")
PUBLIC_EXACT = frozenset({"/", "/favicon.ico"})
# probes may address the server by any name (a pod IP); these answer nothing worth rebinding for
HEALTH_PREFIXES = ("/healthz", "/readyz")
LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# a header no cross-site page can send without a CORS preflight, which this server never grants
CSRF_HEADER = "X-Asyncjobs-Request"
HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    421: "misdirected_request",
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


def bearer_matches(request: web.Request, expected: bytes) -> bool:
    """True if the request sends ``Authorization: Bearer <expected>``; the scheme name is
    case-insensitive (RFC 7235), the token is compared in constant time."""
    scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), expected)


def is_public(path: str) -> bool:
    """Paths that take no credentials, even with a token set."""
    return path in PUBLIC_EXACT or path.startswith(PUBLIC_PREFIXES)


def auth_middleware(token: str | None) -> Any:
    """Require ``Authorization: Bearer <token>`` on everything but the public paths; on the
    dashboard's event stream (:data:`web.tickets.STREAM_PATH`, for ``EventSource``, which
    sends no headers) a valid ``?ticket=`` is accepted instead, and nowhere else."""
    expected = token.encode() if token else None

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        if expected is None or is_public(request.path) or bearer_matches(request, expected):
            return await handler(request)
        if request.path == STREAM_PATH and token and check_ticket(token, request.query.get("ticket", "")):
            return await handler(request)
        if request.path == STREAM_PATH:
            raise ApiError(401, "unauthorized", "missing or expired ticket: POST /api/dashboard/ticket for a new one")
        raise ApiError(
            401,
            "unauthorized",
            "missing or wrong API token: send 'Authorization: Bearer <token>' with the value of ASYNCJOBS_API_TOKEN",
        )

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


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in a ``Host`` header, lower-cased, without port or trailing dot."""
    header = header.strip().lower()
    if header.startswith("["):
        return header.partition("]")[0] + "]"
    name, _, port = header.rpartition(":")
    return (name if name and port.isdigit() else header).rstrip(".")


def host_middleware(token: str | None, allowed: tuple[str, ...]) -> Any:
    """Serve only requests addressed to this server by a name it was told about.

    Without a token, a web page on another site could make the browser send requests here
    through a DNS name that resolves to 127.0.0.1 (DNS rebinding): only loopback names and
    ``allowed`` pass then. With a token, ``allowed`` (when set) still applies.
    """
    names = frozenset(h.strip().lower().rstrip(".") for h in allowed)
    check = "*" not in names and (bool(names) or not token)

    @web.middleware
    async def host_check(request: web.Request, handler: Handler) -> web.StreamResponse:
        header = request.headers.get("Host")
        if check and header is not None and not request.path.startswith(HEALTH_PREFIXES):
            name = host_name(header)
            if not (is_loopback(name) or name in names):
                raise ApiError(
                    421,
                    "misdirected_request",
                    f"this server does not answer to the host name {name[:80]!r}: list it in ASYNCJOBS_ALLOWED_HOSTS",
                    {"host": name[:80]},
                )
        return await handler(request)

    return host_check


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _cross_site(request: web.Request) -> bool:
    if request.headers.get("Sec-Fetch-Site") == "cross-site":
        return True
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return origin == "null" or urlparse(origin).netloc != request.host


@web.middleware
async def cross_site_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse a state-changing ``/api/`` request that the browser says comes from another site
    (``Sec-Fetch-Site: cross-site``, or an ``Origin`` that is not this host)."""
    if request.method not in ("GET", "HEAD", "OPTIONS") and request.path.startswith("/api/") and _cross_site(request):
        raise ApiError(403, "cross_site", "cross-site requests may not change state")
    return await handler(request)


def require_page_header(request: web.Request) -> None:
    """The dashboard's actions carry ``X-Asyncjobs-Request: 1`` whatever else they send (403
    otherwise): proof that a page of this site sent them."""
    if request.headers.get(CSRF_HEADER) != "1":
        raise ApiError(403, "csrf", f"send the '{CSRF_HEADER}: 1' header")


@web.middleware
async def unsafe_request_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A state-changing ``/api/`` request must be one that a page on another site cannot
    forge: a JSON body, or (without a body) the ``X-Asyncjobs-Request`` or ``Authorization``
    header. Each of these needs a CORS preflight, which this server never grants."""
    unrouted = request.match_info.http_exception is not None  # 404/405 answer first
    if request.method not in UNSAFE_METHODS or not request.path.startswith("/api/") or unrouted:
        return await handler(request)
    content_type = request.headers.get("Content-Type", "")
    if _is_json(content_type):
        return await handler(request)
    has_body = bool(request.content_length) or "Transfer-Encoding" in request.headers
    if not has_body and (CSRF_HEADER in request.headers or "Authorization" in request.headers):
        return await handler(request)
    shown = content_type[:80] or "none"
    raise ApiError(
        415,
        "unsupported_media_type",
        f"send the request body as JSON with 'Content-Type: application/json' (got {shown!r}); "
        f"a request without a body may send the '{CSRF_HEADER}: 1' header instead",
        {"content_type": content_type[:80] or None},
    )


async def hide_server_version(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: name no software versions (aiohttp adds ``Python/x aiohttp/y``
    only when the header is missing)."""
    response.headers["Server"] = "asyncjobs"
