"""``POST /api/jobs`` guards, on a real redis-server: job ids the scheduler owns are refused,
and a deferral is bounded both ways (a past ``defer_until`` is "now" at the job's priority)."""

from __future__ import annotations

from typing import Any

from arq.utils import timestamp_ms
from web_support import error_of

from asyncjobs.examples import FUNCTIONS


async def enqueue(api: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = await api.post("/api/jobs", json=body)
    data = await r.json()
    assert r.status == 202, data
    return data


async def test_a_cron_tick_id_is_refused_and_nothing_is_written(make_api: Any, redis_url: str) -> None:
    api = await make_api(url=redis_url)
    for job_id in ("cron:cleanup:1893456000000", "cron:x"):
        r = await api.post("/api/jobs", json={"function": "count_words", "args": ["a"], "job_id": job_id})
        body = await r.json()
        assert r.status == 422, body
        code, message = error_of(body)
        assert code == "invalid_value" and body["error"]["details"] == {"field": "job_id"}
        assert f"job_id {job_id!r} is reserved" in message
        r = await api.get(f"/api/jobs/{job_id}")  # looking it up is fine: there is nothing
        assert r.status == 404
    r = await api.post("/api/jobs", json={"function": "count_words", "args": ["a"], "job_id": "crontab-report"})
    assert r.status == 202  # only the prefix is reserved


async def test_a_past_defer_until_is_now_at_the_jobs_priority(make_api: Any, redis_url: str, start_worker: Any) -> None:
    api = await make_api(url=redis_url)  # no worker yet: the jobs wait in the queue
    before = timestamp_ms()
    urgent = await enqueue(api, {"function": "count_words", "args": ["a"], "priority": 9})
    ancient = await enqueue(api, {"function": "count_words", "args": ["a b"], "defer_until": "0001-01-01T00:00:00Z"})
    naive = await enqueue(api, {"function": "count_words", "args": ["a b c"], "defer_until": "0001-01-01T00:00:00"})
    after = timestamp_ms()
    for job in (ancient, naive):
        assert job["status"] == "queued" and job["priority"] == 0 and before <= job["scheduled_ms"] <= after, job
        body = await (await api.get(f"/api/jobs/{job['job_id']}")).json()
        assert body["status"] == "queued" and body["priority"] == 0, body
        assert before <= body["scheduled_ms"] <= after, body
    queue = (await (await api.get("/api/queues")).json())["queues"][0]
    assert before <= queue["oldest_queued_ms"] <= after, queue  # not "waiting since year 1"
    await start_worker(FUNCTIONS, max_jobs=1)
    done = {}
    for job in (urgent, ancient, naive):
        r = await api.get(f"/api/jobs/{job['job_id']}/result", params={"timeout": "10"})
        done[job["job_id"]] = await r.json()
    starts = [done[j["job_id"]]["start_ms"] for j in (urgent, ancient, naive)]
    assert starts == sorted(starts), done  # the priority-9 job ran first
    assert done[urgent["job_id"]]["finish_ms"] <= done[ancient["job_id"]]["start_ms"], done


async def test_defer_until_gets_the_same_bound_and_error_as_defer_by(make_api: Any, redis_url: str) -> None:
    api = await make_api(url=redis_url)
    errors = {}
    for field, value in (("defer_by", 32_000_000), ("defer_until", "9999-01-01T00:00:00Z")):
        r = await api.post("/api/jobs", json={"function": "count_words", "args": ["a"], field: value})
        body = await r.json()
        assert r.status == 422, body
        code, message = error_of(body)
        assert body["error"]["details"][0]["loc"] == [field]
        errors[field] = (code, message.split(" is too far ahead: ")[1])
        assert message.startswith(field)
    assert errors["defer_by"] == errors["defer_until"] == ("invalid_request", "at most 31622400 s (366 days) ahead")
    schema = (await (await api.get("/api/openapi.json")).json())["components"]["schemas"]["EnqueueRequest"]
    defer_by = [b["properties"]["defer_by"] for b in schema["oneOf"] if "defer_by" in b["required"]]
    assert defer_by and all(s["maximum"] == 31622400 for s in defer_by)  # the bound is still documented
