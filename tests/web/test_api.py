"""The HTTP API in-process (aiohttp test client) on a private in-memory broker."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.web import StaticDef

from asyncjobs import Registry, Settings, deadletter, job
from web.app import BROKER, CLIENT, HUB, create_app
from web.openapi import OPERATIONS
from web.routes import ROUTES

CSRF = {"X-Asyncjobs-Request": "1"}  # a body-less POST proves it is not a cross-site form


async def enqueue(api: Any, body: dict[str, Any], status: int = 202) -> dict[str, Any]:
    r = await api.post("/api/jobs", json=body)
    data = await r.json()
    assert r.status == status, data
    return data


async def test_enqueue_then_result(api: Any) -> None:
    job = await enqueue(api, {"function": "count_words", "args": ["the quick brown fox"]})
    assert job["status"] == "queued" and job["function"] == "count_words" and job["queue"] == "default"
    assert job["links"]["result"] == f"/api/jobs/{job['job_id']}/result"
    r = await api.get(job["links"]["result"], params={"timeout": "10"})
    body = await r.json()
    assert r.status == 200, body
    assert body["status"] == "complete" and body["result"] == 4
    r = await api.get(job["links"]["self"])
    assert (await r.json())["result"] == 4


async def test_kwargs_and_defaults(api: Any) -> None:
    job = await enqueue(
        api, {"function": "generate_report", "kwargs": {"title": "T", "sections": 2, "step_seconds": 0}}
    )
    r = await api.get(f"/api/jobs/{job['job_id']}/result?timeout=10")
    body = await r.json()
    assert body["status"] == "complete" and body["result"]["sections"] == 2
    assert body["progress"] == 100


async def test_same_job_id_is_idempotent_and_other_function_conflicts(make_api: Any) -> None:
    api = await make_api()  # no worker: the job stays queued
    first = await enqueue(api, {"function": "count_words", "args": ["a"], "job_id": "order-17"})
    again = await enqueue(api, {"function": "count_words", "args": ["a"], "job_id": "order-17"}, status=200)
    assert again["job_id"] == first["job_id"] == "order-17" and again["status"] == "queued"
    r = await api.post("/api/jobs", json={"function": "send_email", "args": ["a@b", "s", "b"], "job_id": "order-17"})
    assert r.status == 409
    assert (await r.json())["error"]["code"] == "conflict"


async def test_result_wait_is_bounded_and_reports_pending(make_api: Any) -> None:
    api = await make_api()
    job = await enqueue(api, {"function": "count_words", "args": ["a"]})
    r = await api.get(f"/api/jobs/{job['job_id']}/result", params={"timeout": "0.2"})
    assert r.status == 202
    assert (await r.json())["status"] == "queued"


async def test_deferred_job(make_api: Any) -> None:
    api = await make_api()
    job = await enqueue(api, {"function": "count_words", "args": ["a"], "defer_by": 60})
    assert job["status"] == "deferred" and job["scheduled_ms"] > job["enqueue_ms"]
    r = await api.get(f"/api/jobs/{job['job_id']}")
    assert (await r.json())["status"] == "deferred"


async def test_priority_job_is_queued_with_a_decoded_time(make_api: Any) -> None:
    api = await make_api()  # no worker: the jobs stay queued
    first = await enqueue(api, {"function": "count_words", "args": ["a"]})
    job = await enqueue(api, {"function": "count_words", "args": ["b"], "priority": 9})
    assert job["status"] == "queued" and job["priority"] == 9
    r = await api.get(f"/api/jobs/{job['job_id']}")
    body = await r.json()
    assert body["status"] == "queued" and body["priority"] == 9
    assert body["scheduled_ms"] == body["enqueue_ms"]  # not the score, 9 priority steps earlier
    first = await (await api.get(f"/api/jobs/{first['job_id']}")).json()
    queues = (await (await api.get("/api/queues")).json())["queues"]
    assert queues[0]["queued"] == 2
    assert queues[0]["oldest_queued_ms"] == first["scheduled_ms"]  # the longest-waiting, not the first in line


@job(retries=0)
async def refused(ctx: Any, to: str) -> None:
    """Fails at once, no retries: its outcome is known as soon as it has run."""
    raise ValueError(f"{to!r} is not an email address")


async def test_failed_job_result(aiohttp_client: Any, run_worker: Any, memory_url: str) -> None:
    api = await aiohttp_client(create_app(Settings(redis_url=memory_url), Registry([refused])))
    await run_worker(memory_url, [refused])
    job = await enqueue(api, {"function": "refused", "args": ["not-an-address"], "job_id": "mail-1"})
    r = await api.get("/api/jobs/mail-1/result?timeout=10")
    body = await r.json()
    assert r.status == 200 and job["job_id"] == "mail-1"
    assert body["status"] == "failed", body
    assert body["error"]["type"] == "ValueError"
    assert body["error"]["message"] == "'not-an-address' is not an email address"


async def test_abort_queued_job_then_conflict_after_finish(make_api: Any, run_worker: Any, memory_url: str) -> None:
    api = await make_api()
    job = await enqueue(api, {"function": "count_words", "args": ["a"]})
    r = await api.post(f"/api/jobs/{job['job_id']}/abort", headers=CSRF)
    assert r.status == 200 and (await r.json())["aborted"] is True
    assert (await (await api.get(f"/api/jobs/{job['job_id']}")).json())["status"] == "aborted"
    await run_worker(memory_url)
    done = await enqueue(api, {"function": "count_words", "args": ["a"]})
    assert (await api.get(f"/api/jobs/{done['job_id']}/result?timeout=10")).status == 200
    r = await api.post(f"/api/jobs/{done['job_id']}/abort", headers=CSRF)
    assert r.status == 409 and (await r.json())["error"]["code"] == "already_finished"


async def test_queues_workers_functions(api: Any) -> None:
    await enqueue(api, {"function": "count_words", "args": ["a b"]})
    queues = (await (await api.get("/api/queues")).json())["queues"]
    assert [q["name"] for q in queues] == ["default"]
    assert {"queued", "deferred", "in_progress", "complete", "failed", "aborted"} <= set(queues[0])
    workers = (await (await api.get("/api/workers")).json())["workers"]
    assert len(workers) == 1 and workers[0]["queues"] == ["default"]
    functions = {f["name"]: f for f in (await (await api.get("/api/functions")).json())["functions"]}
    assert {"count_words", "send_email", "process_csv", "generate_report", "cleanup"} <= set(functions)
    params = functions["count_words"]["parameters"]
    assert params["properties"]["text"]["type"] == "string" and params["required"] == ["text"]
    assert functions["process_csv"]["parameters"]["x-positional"] == ["path", "progress_every_s"]


async def test_dead_letters_list_and_retry(api: Any) -> None:
    broker = api.server.app[BROKER]
    await deadletter.record(
        broker,
        job_id="dead-1",
        function="count_words",
        args=["one two"],
        kwargs={},
        queue="default",
        tries=3,
        reason="boom",
        error={"type": "ValueError", "message": "boom"},
    )
    page = await (await api.get("/api/dead?limit=10")).json()
    assert page["total"] == 1 and page["items"][0]["job_id"] == "dead-1"
    r = await api.post("/api/dead/dead-1/retry", headers=CSRF)
    assert r.status == 202
    r = await api.get("/api/jobs/dead-1/result?timeout=10")
    assert (await r.json())["result"] == 2
    assert (await (await api.get("/api/dead")).json())["total"] == 0
    r = await api.post("/api/dead/dead-1/retry", headers=CSRF)
    assert r.status == 404 and (await r.json())["error"]["code"] == "dead_letter_not_found"


async def test_health_ready_metrics_and_index(api: Any) -> None:
    assert (await (await api.get("/healthz")).json()) == {"status": "ok"}
    r = await api.get("/readyz")
    assert r.status == 200 and (await r.json())["checks"] == {"redis": "ok"}
    job = await enqueue(api, {"function": "count_words", "args": ["a"]})
    assert (await api.get(f"/api/jobs/{job['job_id']}/result?timeout=10")).status == 200
    text = await (await api.get("/metrics")).text()
    assert 'asyncjobs_queue_jobs_ended_total{outcome="complete",queue="default"} 1.0' in text
    assert 'asyncjobs_http_jobs_enqueued_total{function="count_words"} 1.0' in text
    assert 'asyncjobs_http_requests_total{method="POST",route="/api/jobs",status="202"} 1.0' in text
    assert "asyncjobs_redis_up 1.0" in text and "asyncjobs_workers 1.0" in text
    r = await api.get("/")
    assert r.status == 200 and "text/html" in r.headers["Content-Type"]


async def test_openapi_covers_every_route(api: Any) -> None:
    doc = await (await api.get("/api/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    for route in ROUTES:
        method, path = (
            ("GET", f"{route.prefix}/{{filename}}") if isinstance(route, StaticDef) else (route.method, route.path)
        )
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", path)  # the OpenAPI form of {id:[^/]+}
        assert (method, path) in OPERATIONS
        assert method.lower() in doc["paths"][path]
    assert doc["components"]["schemas"]["Function.count_words"]["required"] == ["text"]


async def test_state_is_typed_and_shared(api: Any) -> None:
    app = api.server.app
    assert app[CLIENT].hub is app[HUB]
    assert app[CLIENT].redis is app[BROKER]


async def test_many_apps_in_one_process(aiohttp_client: Any, memory_url: str) -> None:
    from asyncjobs.examples import FUNCTIONS

    one, two = [await aiohttp_client(create_app(Settings(redis_url=memory_url), Registry(FUNCTIONS))) for _ in range(2)]
    await enqueue(one, {"function": "count_words", "args": ["a"]})
    sample = 'asyncjobs_http_jobs_enqueued_total{function="count_words"} 1.0'
    assert sample in await (await one.get("/metrics")).text()
    assert "asyncjobs_http_jobs_enqueued_total{" not in await (await two.get("/metrics")).text()  # metrics per app


async def test_job_on_a_queue_the_app_does_not_serve_is_found_and_aborted(make_api: Any, redis_url: str) -> None:
    import asyncjobs

    api = await make_api(url=redis_url, queues=("default",))
    async with asyncjobs.connect(redis_url) as client:
        await client.enqueue_call("count_words", ["a b"], job_id="api-high", queue="high")
    r = await api.get("/api/jobs/api-high")
    body = await r.json()
    assert r.status == 200, body
    assert (body["status"], body["queue"]) == ("queued", "high")
    r = await api.post("/api/jobs/api-high/abort", headers=CSRF)
    body = await r.json()
    assert (r.status, body["aborted"], body["status"]) == (200, True, "aborted"), body
