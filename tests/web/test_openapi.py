"""The OpenAPI document matches the app: every route is in it, its security is the one the app
enforces, its enqueue body is the one the API accepts (``2.0`` is an integer in both)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp import web
from web_support import TOKEN

from asyncjobs import Registry, Settings
from asyncjobs.examples import FUNCTIONS
from web.app import create_app
from web.openapi import document

PUBLIC = {"/healthz", "/readyz", "/", "/dashboard/static/{filename}"}


def _doc(token: str | None) -> dict[str, Any]:
    return document(create_app(Settings(redis_url="memory://doc", api_token=token), Registry(FUNCTIONS)))


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


@pytest.mark.parametrize("token", [TOKEN, None])
def test_every_route_on_the_app_is_documented(token: str | None) -> None:
    app = create_app(Settings(redis_url="memory://doc", api_token=token), Registry(FUNCTIONS))
    doc = document(app)
    routes = list(app.router.routes())
    assert any(r.resource is not None and r.resource.canonical == "/api/dashboard/jobs" for r in routes)
    for route in routes:
        resource = route.resource
        assert resource is not None
        path = resource.canonical + ("/{filename}" if isinstance(resource, web.StaticResource) else "")
        assert route.method.lower() in doc["paths"].get(path, {}), f"{route.method} {path} is not documented"


def test_without_a_token_nothing_asks_for_credentials() -> None:
    doc = _doc(None)
    assert "security" not in doc and "securitySchemes" not in doc["components"]
    for path, method, op in _operations(doc):
        assert "security" not in op and "401" not in op["responses"], (method, path)


def test_with_a_token_bearer_auth_is_declared_except_on_public_paths() -> None:
    doc = _doc(TOKEN)
    assert doc["security"] == [{"bearer": []}]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "the value of ASYNCJOBS_API_TOKEN",
    }
    for path, method, op in _operations(doc):
        if path in PUBLIC:
            assert op["security"] == [] and "401" not in op["responses"], (method, path)
        elif path == "/dashboard/events":  # EventSource cannot send headers: a ticket will do
            assert op["security"] == [{"bearer": []}, {"ticket": []}]
        else:
            assert "security" not in op and "401" in op["responses"], (method, path)


async def test_the_declared_security_is_what_the_server_enforces(make_api: Any) -> None:
    api = await make_api(api_token=TOKEN)
    doc = await (await api.get("/api/openapi.json", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    checked = 0
    for path, method, op in _operations(doc):
        if "{id}" in path or method not in ("get", "head", "post"):
            continue
        if path.endswith("{filename}"):
            path = path.replace("{filename}", op["parameters"][0]["schema"]["enum"][0])
        r = await api.request(method.upper(), path)  # no credentials
        assert (r.status == 401) == (op.get("security") != []), (method, path, r.status)
        checked += 1
    assert checked > 20


async def test_whole_numbers_written_as_floats_are_integers(make_api: Any) -> None:
    api = await make_api()
    r = await api.post("/api/jobs", json={"function": "count_words", "args": ["a b"], "priority": 2.0})
    assert r.status == 202, await r.text()
    assert (await r.json())["priority"] == 2
    body = {"function": "generate_report", "kwargs": {"title": "t", "sections": 2.0}}
    job_id = (await (await api.post("/api/jobs", json=body)).json())["job_id"]
    kwargs = (await (await api.get(f"/api/jobs/{job_id}")).json())["kwargs"]
    assert kwargs == {"title": "t", "sections": 2} and type(kwargs["sections"]) is int  # the job gets an int
    for bad in (
        {"function": "count_words", "args": ["a"], "priority": 2.5},
        {"function": "count_words", "args": ["a"], "priority": True},
        {"function": "generate_report", "args": ["t", 2.5]},
        {"function": "generate_report", "args": ["t", -9223372036854775809]},  # a float, rounded: not taken as int
    ):
        r = await api.post("/api/jobs", json=bad)
        assert r.status == 422, (bad, await r.text())


async def test_deferral_fields_take_what_the_schema_says(make_api: Any) -> None:
    api = await make_api()
    doc = await (await api.get("/api/openapi.json")).json()
    branch = next(b for b in doc["components"]["schemas"]["EnqueueRequest"]["oneOf"] if "defer_until" in b["required"])
    until = re.compile(branch["properties"]["defer_until"]["pattern"])
    latest = f"{datetime.now(UTC).year}-12-28T23:59:59Z"  # the schema's last day: within 366 days
    for defer_until in ("1000-01-01T00:00:00Z", latest):
        assert until.match(defer_until)
        body = {"function": "count_words", "args": ["a"], "defer_until": defer_until}
        r = await api.post("/api/jobs", json=body)
        assert r.status == 202, (defer_until, await r.text())
    for bad in ({"defer_until": 0}, {"defer_until": "0"}, {"defer_by": "5"}, {"defer_by": True}):
        r = await api.post("/api/jobs", json={"function": "count_words", "args": ["a"], **bad})
        assert r.status == 422, (bad, await r.text())
    assert not until.match(f"{datetime.now(UTC).year + 1}-01-01T00:00:00Z")


def test_the_enqueue_body_has_exact_branches_for_every_function() -> None:
    branches = _doc(None)["components"]["schemas"]["EnqueueRequest"]["oneOf"]
    assert {b["properties"]["function"]["const"] for b in branches} == {f.name for f in Registry(FUNCTIONS)}
    send_email = [b for b in branches if b["properties"]["function"]["const"] == "send_email"]
    # 0-3 positional arguments, times due now / defer_by / defer_until, each with no flow
    # control, dedupe_for or throttle; plus debounce (due now, at priority 0)
    assert len(send_email) == 4 * (3 * 3 + 1)
    plain = [b for b in send_email if "dedupe_for" not in b["required"] and "throttle" not in b["required"]]
    due_now = [b for b in plain if b["properties"]["priority"].get("type") == "integer"]
    by_count = {b["properties"]["args"]["maxItems"]: b for b in due_now}
    assert sorted(by_count) == [0, 1, 2, 3]
    two = by_count[2]
    assert [s["type"] for s in two["properties"]["args"]["prefixItems"]] == ["string", "string"]
    assert two["properties"]["kwargs"]["required"] == ["body"] and "args" in two["required"]
    assert two["properties"]["kwargs"]["additionalProperties"] is False


async def test_dashboard_page_numbers_may_be_empty_as_documented(make_api: Any) -> None:
    api = await make_api()
    doc = await (await api.get("/api/openapi.json")).json()
    params = {p["name"]: p["schema"] for p in doc["paths"]["/api/dashboard/jobs"]["get"]["parameters"]}
    for name in ("cursor", "limit"):
        assert {"const": ""} in params[name]["anyOf"]  # "?cursor=" means the default
        r = await api.get(f"/api/dashboard/jobs?{name}=")
        assert r.status == 200, await r.text()
        r = await api.get(f"/api/dashboard/jobs?{name}=x")
        assert r.status == 400, await r.text()
