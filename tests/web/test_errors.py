"""Every error status of DESIGN §3, with the JSON error shape."""

from __future__ import annotations

import io
from typing import Any

import pytest
from web_support import TOKEN, RedisServer, error_of

from asyncjobs import Settings
from asyncjobs.errors import ConfigError
from web.app import check_bind


async def post(api: Any, body: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    r = await api.post("/api/jobs", **({"json": body} if body is not None else {}), **kw)
    return r.status, await r.json()


async def test_400_malformed_json(make_api: Any) -> None:
    api = await make_api()
    status, body = await post(
        api, None, data=b'{"function": "count_words",', headers={"Content-Type": "application/json"}
    )
    assert status == 400
    code, message = error_of(body)
    assert code == "malformed_json" and "not valid JSON" in message


async def test_404_unknown_function(make_api: Any) -> None:
    status, body = await post(await make_api(), {"function": "nope", "args": []})
    assert status == 404
    code, message = error_of(body)
    assert code == "unknown_function" and "nope" in message and "count_words" in message


async def test_404_unknown_job(make_api: Any) -> None:
    api = await make_api()
    for path in ("/api/jobs/missing-1", "/api/jobs/missing-1/result", "/api/jobs/missing-1/events"):
        r = await api.get(path)
        assert r.status == 404, path
        code, message = error_of(await r.json())
        assert code == "job_not_found" and "missing-1" in message
    r = await api.post("/api/jobs/missing-1/abort", headers={"X-Asyncjobs-Request": "1"})
    assert r.status == 404


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        ({"function": "count_words", "args": "the text"}, "invalid_request", "args"),
        ({"function": "count_words", "args": [42]}, "invalid_arguments", "text"),
        ({"function": "count_words", "args": []}, "invalid_arguments", "text"),
        ({"function": "count_words", "args": ["a", "b"]}, "invalid_arguments", "positional"),
        ({"function": "count_words", "args": ["a"], "kwargs": {"text": "b"}}, "invalid_arguments", "text"),
        ({"function": "generate_report", "kwargs": {"title": "t", "sections": "3"}}, "invalid_arguments", "sections"),
        ({"function": "count_words", "args": ["a"], "colour": "red"}, "invalid_request", "colour"),
        ({"function": "count_words", "args": ["a"], "job_id": "bad id!"}, "invalid_request", "job_id"),
        ({"function": "count_words", "args": ["a"], "queue": "elsewhere"}, "unknown_queue", "elsewhere"),
        ({"function": "count_words", "args": ["a"], "defer_by": -1}, "invalid_request", "defer_by"),
        ({"function": "count_words", "args": ["a"], "priority": 10}, "invalid_request", "priority"),
        ({"function": "count_words", "args": ["a"], "priority": -1}, "invalid_request", "priority"),
        ({"function": "count_words", "args": ["a"], "priority": "5"}, "invalid_request", "priority"),
        ({"function": "count_words", "args": ["a"], "priority": True}, "invalid_request", "priority"),
        ({"function": "count_words", "args": ["a"], "priority": 2.5}, "invalid_request", "priority"),
        ({"function": "count_words", "args": ["a"], "priority": 3, "defer_by": 5}, "invalid_request", "priority"),
        (
            {"function": "count_words", "args": ["a"], "priority": 3, "defer_until": "2099-01-01T00:00:00Z"},
            "invalid_request",
            "priority",
        ),
        (["count_words"], "invalid_request", "JSON object"),
    ],
)
async def test_422_invalid_arguments(make_api: Any, body: Any, code: str, names: str) -> None:
    api = await make_api()
    status, data = await post(api, body)
    assert status == 422, data
    got_code, message = error_of(data)
    assert got_code == code and names in message
    queues = (await (await api.get("/api/queues")).json())["queues"]
    assert queues[0]["queued"] == 0  # nothing was written


async def test_422_bad_path_and_query_values(make_api: Any) -> None:
    api = await make_api()
    for path in (
        "/api/jobs/bad%20id",
        "/api/jobs/x/result?timeout=61",
        "/api/jobs/x/result?timeout=nan",
        "/api/dead?limit=0",
    ):
        r = await api.get(path)
        assert r.status == 422, path
        error_of(await r.json())


async def test_413_body_too_large(make_api: Any) -> None:
    api = await make_api()
    big = b'{"function": "count_words", "args": ["' + b"x" * (20 * 1024 * 1024) + b'"]}'
    status, body = await post(api, None, data=io.BytesIO(big), headers={"Content-Type": "application/json"})
    assert status == 413
    code, message = error_of(body)
    assert code == "body_too_large" and "limit" in message


async def test_413_chunked_body_too_large(make_api: Any) -> None:
    api = await make_api(max_body_bytes=1000)

    async def chunks() -> Any:
        for _ in range(100):
            yield b"x" * 1000

    status, body = await post(api, None, data=chunks(), headers={"Content-Type": "application/json"})
    assert status == 413
    assert error_of(body)[0] == "body_too_large"


async def test_401_missing_or_wrong_token(make_api: Any) -> None:
    api = await make_api(api_token=TOKEN)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {TOKEN}"}):
        r = await api.post("/api/jobs", json={"function": "count_words", "args": ["a"]}, headers=headers)
        assert r.status == 401
        code, message = error_of(await r.json())
        assert code == "unauthorized" and "ASYNCJOBS_API_TOKEN" in message
    assert (await api.get("/metrics")).status == 401
    assert (await api.get("/healthz")).status == 200
    r = await api.post(
        "/api/jobs", json={"function": "count_words", "args": ["a"]}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status == 202


async def test_405_and_unknown_path_are_json(make_api: Any) -> None:
    api = await make_api()
    r = await api.delete("/api/jobs")
    assert r.status == 405 and error_of(await r.json())[0] == "method_not_allowed"
    r = await api.get("/api/nothing-here")
    assert r.status == 404 and error_of(await r.json())[0] == "not_found"


async def test_503_when_redis_is_down_then_recovers(make_api: Any, own_redis: RedisServer) -> None:
    api = await make_api(url=own_redis.url)
    assert (await api.post("/api/jobs", json={"function": "count_words", "args": ["a"]})).status == 202
    own_redis.stop()
    for method, path in (
        ("POST", "/api/jobs"),
        ("GET", "/api/jobs/x"),
        ("GET", "/api/queues"),
        ("GET", "/api/jobs/x/result?timeout=1"),
        ("GET", "/api/jobs/x/events"),
    ):
        r = await api.request(method, path, json={"function": "count_words", "args": ["a"]})
        assert r.status == 503, (path, await r.text())
        code, message = error_of(await r.json())
        assert code == "redis_unavailable" and "Redis is unreachable" in message
    r = await api.get("/readyz")
    assert r.status == 503 and (await r.json())["checks"] == {"redis": "down"}
    assert "asyncjobs_redis_up 0.0" in await (await api.get("/metrics")).text()
    own_redis.start()
    assert (await api.get("/readyz")).status == 200
    r = await api.post("/api/jobs", json={"function": "count_words", "args": ["a"]})
    assert r.status == 202


def test_refuses_public_bind_without_token() -> None:
    with pytest.raises(ConfigError, match="ASYNCJOBS_API_TOKEN"):
        check_bind("0.0.0.0", Settings())
    check_bind("127.0.0.1", Settings())
    check_bind("::1", Settings())
    check_bind("0.0.0.0", Settings(api_token=TOKEN))
    check_bind("0.0.0.0", Settings(allow_public_without_token=True))
