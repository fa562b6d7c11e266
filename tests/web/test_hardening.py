"""Attacks on the HTTP API, reproduced against a real aiohttp server on the real redis-server:
DNS rebinding, forged simple requests, inputs that used to answer 500, slow bodies, and what
the server discloses (versions, Redis's address, install paths)."""

from __future__ import annotations

import asyncio
import logging
import os
from typing import Any

import pytest
from web_support import TOKEN, RedisServer, error_of

import settings as deployment
from asyncjobs import Registry, Settings, job
from web.app import create_app
from web.tracebacks import relative_path

COUNT = {"function": "count_words", "args": ["a b"]}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CSRF = {"X-Asyncjobs-Request": "1"}


async def queued(api: Any, headers: dict[str, str] | None = None) -> int:
    r = await api.get("/api/queues", headers=headers)
    return int((await r.json())["queues"][0]["queued"])


# --- DNS rebinding ----------------------------------------------------------------------
async def test_rebound_host_is_refused_without_a_token(make_api: Any, redis_url: str) -> None:
    api = await make_api(url=redis_url)
    rebound = {"Host": "attacker.test:8000", "Origin": "http://attacker.test:8000"}
    r = await api.post("/api/jobs", json=COUNT, headers=rebound)
    assert r.status == 421
    code, message = error_of(await r.json())
    assert code == "misdirected_request" and "ASYNCJOBS_ALLOWED_HOSTS" in message
    assert (await api.get("/api/queues", headers=rebound)).status == 421
    assert (await api.get("/api/dashboard/overview", headers=rebound)).status == 421
    assert (await api.get("/healthz", headers={"Host": "10.1.2.3:8000"})).status == 200  # probes by pod IP
    assert await queued(api) == 0
    for host in ("localhost:8000", "127.0.0.1", "[::1]:8000", "LOCALHOST.", "127.0.0.2:9"):
        r = await api.post("/api/jobs", json=COUNT, headers={"Host": host, "Origin": f"http://{host}"})
        assert r.status == 202, (host, await r.text())


async def test_allowed_hosts_apply_with_or_without_a_token(make_api: Any, redis_url: str) -> None:
    open_api = await make_api(url=redis_url, allowed_hosts=("jobs.example.com",))
    assert (await open_api.post("/api/jobs", json=COUNT, headers={"Host": "jobs.example.com:443"})).status == 202
    assert (await open_api.post("/api/jobs", json=COUNT, headers={"Host": "other.example.com"})).status == 421
    guarded = await make_api(url=redis_url, api_token=TOKEN, allowed_hosts=("jobs.example.com",))
    assert (await guarded.post("/api/jobs", json=COUNT, headers={**AUTH, "Host": "evil.example"})).status == 421
    assert (await guarded.post("/api/jobs", json=COUNT, headers={**AUTH, "Host": "jobs.example.com"})).status == 202
    # a token and no list: any name (the token is what a rebinding page cannot have)
    token_only = await make_api(url=redis_url, api_token=TOKEN)
    assert (await token_only.post("/api/jobs", json=COUNT, headers={**AUTH, "Host": "anything.example"})).status == 202


def test_allowed_hosts_setting() -> None:
    s = deployment.load({"ASYNCJOBS_ALLOWED_HOSTS": "jobs.example.com, api.example.com"})
    assert s.allowed_hosts == ("jobs.example.com", "api.example.com")
    assert deployment.load({}).allowed_hosts == ()


# --- cross-site request forgery --------------------------------------------------------
async def test_simple_requests_cannot_change_state(make_api: Any, redis_url: str) -> None:
    """What a cross-site form or a no-cors fetch can send (no Origin, no custom header) is refused."""
    api = await make_api(url=redis_url)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = await api.post("/api/jobs", data="function=count_words&args=x", headers=form)
    assert r.status == 415 and error_of(await r.json())[0] == "unsupported_media_type"
    text = {"Content-Type": "text/plain"}
    r = await api.post("/api/jobs", data='{"function": "count_words", "args": ["x"]}', headers=text)
    assert r.status == 415
    assert await queued(api) == 0
    job_id = (await (await api.post("/api/jobs", json=COUNT)).json())["job_id"]
    for path in (f"/api/jobs/{job_id}/abort", f"/api/dead/{job_id}/retry"):
        for headers in (form, text, {}):
            r = await api.post(path, data=b"", headers=headers)
            assert r.status == 415, (path, headers, await r.text())
            error_of(await r.json())
    assert (await (await api.get(f"/api/jobs/{job_id}")).json())["status"] == "queued"
    r = await api.post(f"/api/jobs/{job_id}/abort", headers=CSRF)  # what the dashboard sends
    assert r.status == 200 and (await r.json())["aborted"] is True


# --- inputs that answered 500 -----------------------------------------------------------
async def test_hostile_inputs_get_4xx_and_log_no_traceback(
    make_api: Any, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    api = await make_api(url=redis_url, api_token=TOKEN)
    caplog.set_level(logging.WARNING)
    nested = "[" * 300 + "]" * 300
    body = '{"function": "count_words", "args": ' + nested + "}"
    r = await api.post("/api/jobs", data=body, headers={**AUTH, "Content-Type": "application/json"})
    assert r.status == 400 and error_of(await r.json())[0] == "json_too_deep"
    for query in ("limit=%C2%B2", "cursor=%C2%B2", "cursor=" + "9" * 5000, "limit=" + "9" * 5000):
        r = await api.get(f"/api/dashboard/jobs?{query}", headers=AUTH)
        assert r.status == 400, (query[:20], await r.text())
        error_of(await r.json())
    for ticket in ("%C2%B2", "9" * 5000, "9" * 5000 + ".ab", "1.%C2%B2", "99999999999.%C2%B2"):
        r = await api.get(f"/dashboard/events?ticket={ticket}")
        assert r.status == 401, (ticket[:20], await r.text())
        error_of(await r.json())
    logged = [rec for rec in caplog.records if rec.levelno >= logging.ERROR or rec.exc_info]
    assert logged == [], [rec.getMessage() for rec in logged]


async def test_slow_body_gets_408(make_api: Any, redis_url: str) -> None:
    api = await make_api(url=redis_url, body_timeout=0.5)
    reader, writer = await asyncio.open_connection("127.0.0.1", api.port)
    writer.write(
        b"POST /api/jobs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"function": '
    )
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    assert status.startswith(b"HTTP/1.1 408"), status
    writer.close()


# --- disclosure -------------------------------------------------------------------------
async def test_dashboard_errors_keep_their_message(make_api: Any, redis_url: str) -> None:
    api = await make_api(url=redis_url, api_token=TOKEN)
    r = await api.get("/api/dashboard/overview")
    assert r.status == 401
    code, message = error_of(await r.json())
    assert code == "unauthorized" and "Bearer" in message
    r = await api.post("/api/dashboard/ticket", json={}, headers=AUTH)
    assert r.status == 403
    code, message = error_of(await r.json())
    assert code == "csrf" and "X-Asyncjobs-Request" in message


async def test_bearer_scheme_is_case_insensitive_everywhere(make_api: Any, redis_url: str) -> None:
    api = await make_api(url=redis_url, api_token=TOKEN)
    for scheme in ("bearer", "BEARER", "Bearer"):
        auth = {"Authorization": f"{scheme} {TOKEN}"}
        assert (await api.get("/api/queues", headers=auth)).status == 200, scheme
        assert (await api.get("/api/dashboard/overview", headers=auth)).status == 200, scheme
        assert (await api.post("/api/dashboard/ticket", headers={**auth, **CSRF})).status == 200, scheme
        stream = await api.get("/dashboard/events", headers=auth)
        assert stream.status == 200, scheme
        stream.close()
    assert (await api.get("/api/queues", headers={"Authorization": f"Basic {TOKEN}"})).status == 401


async def test_readyz_does_not_reveal_the_redis_address(make_api: Any, own_redis: RedisServer) -> None:
    api = await make_api(url=own_redis.url)
    assert (await api.get("/readyz")).status == 200
    own_redis.stop()
    r = await api.get("/readyz")
    text = await r.text()
    assert r.status == 503 and (await r.json())["checks"] == {"redis": "down"}
    assert str(own_redis.port) not in text and "127.0.0.1" not in text and "localhost" not in text, text


async def test_no_server_version_header(make_api: Any, redis_url: str) -> None:
    api = await make_api(url=redis_url, api_token=TOKEN)
    for path in ("/healthz", "/api/queues", "/nothing-here", "/"):
        server = (await api.get(path)).headers.get("Server", "")
        assert "aiohttp" not in server and "Python" not in server, (path, server)


@job(retries=0)
async def explode(ctx: Any) -> None:
    """Fails at once."""
    raise RuntimeError("boom")


@pytest.mark.parametrize("full_paths", [False, True])
async def test_job_traceback_paths(aiohttp_client: Any, run_worker: Any, redis_url: str, full_paths: bool) -> None:
    settings = Settings(redis_url=redis_url, show_traceback_paths=full_paths)
    api = await aiohttp_client(create_app(settings, Registry([explode])))
    await run_worker(redis_url, [explode])
    job_id = (await (await api.post("/api/jobs", json={"function": "explode"})).json())["job_id"]
    body = await (await api.get(f"/api/jobs/{job_id}/result?timeout=10")).json()
    assert body["status"] == "failed"
    trace = body["error"]["traceback"]
    assert "RuntimeError: boom" in trace
    if full_paths:
        assert f'File "{os.path.abspath(__file__)}"' in trace, trace
    else:
        assert 'File "tests/web/test_hardening.py"' in trace and 'File "/' not in trace, trace


def test_relative_path() -> None:
    assert relative_path("/usr/lib/python3.11/site-packages/arq/worker.py") == "arq/worker.py"
    assert relative_path("/opt/venv/lib/python3.12/asyncio/tasks.py") == "asyncio/tasks.py"
    assert relative_path("/srv/app/jobs.py", cwd="/srv/app") == "jobs.py"
    assert relative_path("/home/me/secret/place/jobs.py", cwd="/srv") == ".../place/jobs.py"
    assert relative_path("<string>") == "<string>"
