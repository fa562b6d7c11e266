"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web
from redis.exceptions import RedisError

from web.middlewares import REDIS_DOWN_MESSAGE
from web.responses import json_response
from web.state import BROKER, METRICS, STORE

logger = logging.getLogger(__name__)
READY_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: the process answers (no Redis check)."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """``GET /readyz``: 200 when Redis answers, 503 when it does not. The endpoint is public:
    the client sees only the kind of failure, the server log has the details (Redis's address)."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await request.app[BROKER].ping()
    except (TimeoutError, RedisError, OSError) as e:
        logger.warning("readiness check: Redis unreachable (%s)", str(e)[:200] or type(e).__name__)
        return json_response(
            {
                "status": "unavailable",
                "checks": {"redis": "down"},
                "error": {
                    "code": "redis_unavailable",
                    "message": REDIS_DOWN_MESSAGE,
                    "details": {"reason": type(e).__name__},
                },
            },
            status=503,
        )
    return json_response({"status": "ready", "checks": {"redis": "ok"}})


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: Prometheus exposition (``asyncjobs_redis_up`` 0 when Redis is down)."""
    m = request.app[METRICS]
    await m.refresh(request.app[STORE])
    body, content_type = m.render()
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp
