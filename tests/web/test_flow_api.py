"""Flow control over HTTP (``POST /api/jobs`` with dedupe_for, debounce or throttle) on a real
aiohttp server and a real redis-server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from arq.utils import timestamp_ms


async def post(api: Any, body: dict[str, Any], status: int) -> dict[str, Any]:
    r = await api.post("/api/jobs", json=body)
    data = await r.json()
    assert r.status == status, data
    return data


def words(n: int) -> list[str]:
    return [" ".join(["w"] * n)]


async def test_dedupe_answers_200_with_the_existing_job(make_api: Any, redis_url: str) -> None:
    api = await make_api(url=redis_url)
    key = uuid.uuid4().hex
    body = {"function": "count_words", "args": words(2), "dedupe_for": 30, "dedupe_key": key}
    first = await post(api, body, 202)
    assert "deduplicated" not in first
    again = await post(api, {**body, "args": words(3)}, 200)
    assert again["deduplicated"] is True and again["job_id"] == first["job_id"]
    assert again["args"] == words(2) and again["status"] == "queued"
    by_args = await post(api, {"function": "count_words", "args": [key], "dedupe_for": 30}, 202)
    again = await post(api, {"function": "count_words", "args": [key], "dedupe_for": 30}, 200)
    assert again["deduplicated"] is True and again["job_id"] == by_args["job_id"]


async def test_debounce_replaces_the_waiting_job_and_it_runs_with_the_last_arguments(
    make_api: Any, redis_url: str
) -> None:
    api = await make_api(url=redis_url, worker=True)
    key = uuid.uuid4().hex
    body = {"function": "count_words", "debounce": 2, "dedupe_key": key}
    first = await post(api, {**body, "args": words(1)}, 202)
    assert first["status"] == "deferred"
    before = timestamp_ms()
    again = await post(api, {**body, "args": words(5)}, 200)
    assert again["debounced"] is True and again["job_id"] == first["job_id"]
    assert again["args"] == words(5) and again["scheduled_ms"] >= before + 2000
    r = await api.get(f"/api/jobs/{first['job_id']}/result", params={"timeout": "20"})
    done = await r.json()
    assert done["status"] == "complete" and done["result"] == 5
    assert done["start_ms"] >= before + 2000


async def test_throttle_answers_200_throttled_with_the_job_holding_the_window(make_api: Any, redis_url: str) -> None:
    api = await make_api(url=redis_url)
    key = uuid.uuid4().hex
    body = {"function": "count_words", "args": words(1), "throttle": 30, "throttle_key": key}
    first = await post(api, body, 202)
    dropped = await post(api, {**body, "args": words(2)}, 200)
    assert dropped["throttled"] is True and dropped["job_id"] == first["job_id"] and dropped["args"] == words(1)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"dedupe_key": "k"}, "dedupe_key needs dedupe_for"),
        ({"throttle_key": "k"}, "throttle_key needs throttle"),
        ({"dedupe_for": 5, "throttle": 5}, "use one of dedupe_for, debounce and throttle"),
        ({"debounce": 5, "defer_by": 5}, "debounce defers the job itself"),
        ({"debounce": 5, "priority": 2}, "debounce defers the job itself"),
        ({"dedupe_for": 0}, "dedupe_for"),
        ({"throttle": "5"}, "throttle"),
        ({"dedupe_for": 5, "dedupe_key": ""}, "dedupe_key"),
    ],
)
async def test_flow_options_that_do_not_fit_are_422(make_api: Any, extra: dict[str, Any], needle: str) -> None:
    api = await make_api()
    r = await api.post("/api/jobs", json={"function": "count_words", "args": ["a"], **extra})
    body = await r.json()
    assert r.status == 422, body
    assert body["error"]["code"] == "invalid_request" and needle in body["error"]["message"]


async def test_the_openapi_document_names_the_flow_fields(make_api: Any) -> None:
    api = await make_api()
    doc = await (await api.get("/api/openapi.json")).json()
    branches = doc["components"]["schemas"]["EnqueueRequest"]["oneOf"]
    required = {tuple(b["required"]) for b in branches if b["title"] == "count_words"}
    assert any("dedupe_for" in r for r in required) and any("throttle" in r for r in required)
    debounce = [b for b in branches if "debounce" in b["required"]]
    assert debounce and all(b["properties"]["priority"] == {"const": 0} for b in debounce)
    ok = doc["paths"]["/api/jobs"]["post"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(ok["allOf"][1]["properties"]) == {"deduplicated", "debounced", "throttled"}
