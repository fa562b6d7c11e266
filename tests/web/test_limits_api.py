"""Flow control over HTTP (real Redis, an in-process worker): /api/limits, pausing and resuming
a queue and a function, the waiting reason in the job record and the queue's paused flag,
and the errors for unknown or invalid names."""

from __future__ import annotations

import uuid
from typing import Any

from limits_app import flow_capped, flow_free, flow_rated
from reliability_support import wait_for

from asyncjobs import Registry, Settings
from asyncjobs.testing import InProcessWorkers
from web.app import create_app

CSRF = {"X-Asyncjobs-Request": "1"}
FUNCTIONS = [flow_capped, flow_free, flow_rated]


async def call(api: Any, method: str, path: str, status: int = 200, **kw: Any) -> Any:
    r = await api.request(method, path, **kw)
    body = await r.json()
    assert r.status == status, body
    return body


async def job(api: Any, function: str, args: list[Any], queue: str) -> str:
    body = await call(api, "POST", "/api/jobs", 202, json={"function": function, "args": args, "queue": queue})
    return str(body["job_id"])


async def test_pause_and_resume_over_http(aiohttp_client: Any, redis_url: str) -> None:
    queue = "q" + uuid.uuid4().hex[:8]
    settings = Settings(redis_url=redis_url, queues=(queue,), lease=2.0)
    api = await aiohttp_client(create_app(settings, Registry(FUNCTIONS)))
    workers = InProcessWorkers()
    await workers.start(FUNCTIONS, settings=settings)
    try:
        limits = await wait_for(lambda: _limits(api), "the worker to publish its limits")
        assert limits["flow_capped"]["max_concurrency"] == 3 and limits["flow_capped"]["running"] == 0
        assert limits["flow_rated"]["rate_limit"] == "5/1s" and limits["flow_rated"]["tokens"] == 1

        # a paused queue: its jobs stay queued, marked, and start once it is resumed
        assert await call(api, "POST", f"/api/queues/{queue}/pause", headers=CSRF) == {"queue": queue, "paused": True}
        (stats,) = (await call(api, "GET", "/api/queues"))["queues"]
        assert stats["paused"] is True
        held = await job(api, "flow_free", ["g"], queue)
        metrics = await (await api.get("/metrics")).text()
        assert f'asyncjobs_queue_paused{{queue="{queue}"}} 1.0' in metrics
        assert 'asyncjobs_limit_max_concurrency{function="flow_capped"} 3.0' in metrics
        assert 'asyncjobs_limit_rate_tokens{function="flow_rated"} 1.0' in metrics
        record = await call(api, "GET", f"/api/jobs/{held}")
        assert record["status"] == "queued" and record["waiting"] == "paused"
        await call(api, "POST", f"/api/queues/{queue}/resume", headers=CSRF)
        assert (await call(api, "GET", f"/api/jobs/{held}/result?timeout=20"))["status"] == "complete"

        # a paused function: its job is parked when the claim reaches it; others run past it
        body = await call(api, "POST", "/api/functions/flow_free/pause", headers=CSRF)
        assert body["paused"] is True
        parked = await job(api, "flow_free", ["g"], queue)
        behind = await job(api, "flow_capped", ["g", 0.0], queue)
        assert (await call(api, "GET", f"/api/jobs/{behind}/result?timeout=20"))["status"] == "complete"
        record = await call(api, "GET", f"/api/jobs/{parked}")
        assert record["status"] == "queued" and record["waiting"] == "paused"
        limits = await _limits(api)
        assert limits["flow_free"]["paused"] is True and limits["flow_free"]["paused_jobs"] == 1
        body = await call(api, "POST", "/api/functions/flow_free/resume", headers=CSRF)
        assert body == {"function": "flow_free", "paused": False, "resumed_jobs": 1}
        assert (await call(api, "GET", f"/api/jobs/{parked}/result?timeout=20"))["status"] == "complete"
    finally:
        await workers.close()


async def _limits(api: Any) -> dict[str, Any]:
    body = await call(api, "GET", "/api/limits")
    return {entry["function"]: entry for entry in body["limits"]}


async def test_pause_errors(aiohttp_client: Any, redis_url: str) -> None:
    api = await aiohttp_client(create_app(Settings(redis_url=redis_url, queues=("a",)), Registry(FUNCTIONS)))
    assert (await call(api, "POST", "/api/queues/b/pause", 404, headers=CSRF))["error"]["code"] == "queue_not_found"
    assert (await call(api, "POST", "/api/queues/b%20c/pause", 422, headers=CSRF))["error"]["code"] == "invalid_queue"
    body = await call(api, "POST", "/api/functions/nope/resume", 404, headers=CSRF)
    assert body["error"]["code"] == "function_not_found"
    assert (await call(api, "POST", "/api/queues/a/pause", 415))["error"]["code"] == "unsupported_media_type"
    bad = {"X-Asyncjobs-Request": "yes"}
    assert (await call(api, "POST", "/api/queues/a/pause", 422, headers=bad))["error"]["code"] == "invalid_header"
    assert (await call(api, "GET", "/api/limits")) == {"limits": [], "paused": {"queues": [], "functions": []}}
