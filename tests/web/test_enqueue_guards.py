"""``POST /api/jobs`` guards, on a real redis-server: job ids the scheduler owns are refused,
and a deferral is bounded both ways (a past ``defer_until`` is "now" at the job's priority)."""

from __future__ import annotations

from typing import Any

from web_support import error_of


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
