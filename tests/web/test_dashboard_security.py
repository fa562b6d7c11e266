"""The dashboard's endpoints without a browser: token, stream tickets, cross-site protection,
and the bounded jobs list (on the in-memory broker, through ``make_api`` from conftest)."""

from __future__ import annotations

import asyncio
from typing import Any

from web.tickets import TICKET_TTL_S, check_ticket, make_ticket

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CSRF = {"X-Asyncjobs-Request": "1"}


def test_ticket_expires_and_cannot_be_forged() -> None:
    t = make_ticket(TOKEN, now=1000.0)
    assert check_ticket(TOKEN, t, now=1000.0 + TICKET_TTL_S - 1)
    assert not check_ticket(TOKEN, t, now=1000.0 + TICKET_TTL_S + 1)
    assert not check_ticket("other-token", t, now=1000.0)
    expiry, _, sig = t.partition(".")
    assert not check_ticket(TOKEN, f"{int(expiry) + 3600}.{sig}", now=1000.0)  # extended expiry, old signature
    assert not check_ticket(TOKEN, "garbage", now=1000.0)


async def test_shell_is_public_but_data_needs_the_token(make_api: Any) -> None:
    client = await make_api(api_token=TOKEN)
    page = await client.get("/")
    assert page.status == 200
    assert "Content-Security-Policy" in page.headers
    assert (await client.get("/dashboard/static/app.js")).status == 200
    assert (await client.get("/api/dashboard/overview")).status == 401
    assert (await client.get("/api/dashboard/jobs")).status == 401
    assert (await client.get("/dashboard/events")).status == 401
    assert (await client.get("/dashboard/events?ticket=1.abc")).status == 401
    assert (await client.get("/api/dashboard/overview", headers=AUTH)).status == 200


async def test_ticket_opens_the_event_stream(make_api: Any) -> None:
    client = await make_api(api_token=TOKEN)
    assert (await client.post("/api/dashboard/ticket", headers=AUTH)).status == 403  # no CSRF header
    resp = await client.post("/api/dashboard/ticket", headers={**AUTH, **CSRF})
    ticket = (await resp.json())["ticket"]
    stream = await client.get(f"/dashboard/events?ticket={ticket}")
    assert stream.status == 200
    assert stream.headers["Content-Type"].startswith("text/event-stream")
    line = await stream.content.readline()
    assert line.startswith(b"event: hello")
    stream.close()
    await client.close()  # end the open stream while the in-memory broker is still up


async def test_cross_site_posts_are_refused(make_api: Any) -> None:
    client = await make_api()  # no token: only the origin checks stand between a forged form and the API
    forged = await client.post(
        "/api/jobs",
        json={"function": "count_words", "args": ["x"]},
        headers={"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"},
    )
    assert forged.status == 403
    assert (await client.post("/api/dashboard/dead/purge", headers={"Origin": "https://evil.example"})).status == 403
    assert (await client.post("/api/dashboard/dead/purge")).status == 415  # no JSON body, no CSRF header
    ok = await client.post("/api/dashboard/dead/purge", headers=CSRF)
    assert ok.status == 200
    assert (await ok.json()) == {"purged": 0}


async def test_jobs_list_pages_and_filters(make_api: Any) -> None:
    client = await make_api()
    for i in range(7):
        resp = await client.post("/api/jobs", json={"function": "count_words", "args": [f"job {i} <b>"]})
        assert resp.status == 202
    email = {"to": "a@b", "subject": "s", "body": "b"}
    assert (await client.post("/api/jobs", json={"function": "send_email", "kwargs": email})).status == 202
    first = await (await client.get("/api/dashboard/jobs?limit=5")).json()
    assert first["jobs"][0]["function"] == "send_email"
    assert first["total"] == 8 and len(first["jobs"]) == 5 and first["next_cursor"] == 5
    rest = await (await client.get("/api/dashboard/jobs?limit=5&cursor=5")).json()
    assert len(rest["jobs"]) == 3 and rest["next_cursor"] is None
    by_fn = await (await client.get("/api/dashboard/jobs?function=count_words")).json()
    assert len(by_fn["jobs"]) == 7 and by_fn["filtered"] is True
    by_text = await (await client.get("/api/dashboard/jobs?q=job%203")).json()
    assert [j["args"] for j in by_text["jobs"]] == ['{"args":["job 3 <b>"],"kwargs":{}}']
    assert (await client.get("/api/dashboard/jobs?cursor=x")).status == 400


async def test_jobs_list_shows_waiting_jobs_from_the_queues_then_history(make_api: Any, redis_url: str) -> None:
    """Waiting jobs come from the queue itself (enqueue writes no index entry); started and
    ended jobs from the recent index; a running job (it is in both) is listed once."""
    client = await make_api(url=redis_url, worker=True)
    done = []
    for i in range(3):
        resp = await client.post("/api/jobs", json={"function": "count_words", "args": [f"done {i}"]})
        done.append((await resp.json())["job_id"])
    for job_id in done:
        assert (await client.get(f"/api/jobs/{job_id}/result?timeout=10")).status == 200
    long = {"function": "generate_report", "kwargs": {"title": "t", "sections": 1, "step_seconds": 30}}
    running = (await (await client.post("/api/jobs", json=long)).json())["job_id"]
    deferred = (
        await (await client.post("/api/jobs", json={"function": "count_words", "args": ["x"], "defer_by": 60})).json()
    )["job_id"]
    deadline = asyncio.get_running_loop().time() + 10
    while (await (await client.get(f"/api/jobs/{running}")).json())["status"] != "in_progress":
        assert asyncio.get_running_loop().time() < deadline, "the long job never started"
        await asyncio.sleep(0.02)

    page = await (await client.get("/api/dashboard/jobs")).json()
    listed = [(j["job_id"], j["status"]) for j in page["jobs"]]
    assert listed == [(deferred, "deferred"), (running, "in_progress"), *((d, "complete") for d in reversed(done))]
    assert page["next_cursor"] is None
    complete = await (await client.get("/api/dashboard/jobs?state=complete")).json()
    assert [j["job_id"] for j in complete["jobs"]] == list(reversed(done))
    waiting = await (await client.get("/api/dashboard/jobs?state=deferred")).json()
    assert [j["job_id"] for j in waiting["jobs"]] == [deferred]
    # a queue filter reads only the deployment's queues (arq's health-check key is a string)
    odd = await client.get("/api/dashboard/jobs?queue=health-check")
    assert odd.status == 200 and (await odd.json())["jobs"] == []
    paged = await (await client.get("/api/dashboard/jobs?limit=2&cursor=1")).json()
    assert [j["job_id"] for j in paged["jobs"]] == [running, done[-1]]
    overview = await (await client.get("/api/dashboard/overview")).json()
    default = next(q for q in overview["queues"] if q["name"] == "default")
    assert (default["complete"], default["failed"], default["in_progress"], default["deferred"]) == (3, 0, 1, 1)


async def test_a_ticket_opens_the_stream_and_nothing_else(make_api: Any) -> None:
    client = await make_api(api_token=TOKEN)
    ticket = (await (await client.post("/api/dashboard/ticket", headers={**AUTH, **CSRF})).json())["ticket"]
    for path in (
        "/api/dashboard/overview",
        "/api/dashboard/jobs",
        "/api/dashboard/cron",
        "/api/jobs/some-job",
        "/api/jobs/some-job/events",
        "/api/queues",
        "/api/dead",
        "/api/openapi.json",
        "/metrics",
    ):
        r = await client.get(f"{path}?ticket={ticket}")
        assert r.status == 401, path
        assert (await r.json())["error"]["code"] == "unauthorized"
    r = await client.post(f"/api/dashboard/dead/purge?ticket={ticket}", headers=CSRF)
    assert r.status == 401
    stream = await client.get(f"/dashboard/events?ticket={ticket}")
    assert stream.status == 200 and (await stream.content.readline()).startswith(b"event: hello")
    stream.close()
    await client.close()  # end the open stream while the in-memory broker is still up


async def test_cron_page_shows_the_cron_jobs_given_to_the_app(make_api: Any) -> None:
    from asyncjobs import cron
    from asyncjobs.examples import cleanup

    given = await make_api(cron_jobs=[cron("*/5 * * * *", cleanup)])
    rows = (await (await given.get("/api/dashboard/cron")).json())["cron"]
    assert [(r["name"], r["schedule"], r["last"]["status"]) for r in rows] == [
        ("cron:cleanup", "*/5 * * * *", "not_found")
    ]
    none_given = await make_api()  # nothing is found by looking around the process
    assert (await (await none_given.get("/api/dashboard/cron")).json()) == {"cron": []}


async def test_bad_page_numbers_get_the_api_error_shape(make_api: Any) -> None:
    client = await make_api()
    r = await client.get("/api/dashboard/jobs?cursor=x")
    assert r.status == 400
    assert (await r.json())["error"] == {
        "code": "bad_request",
        "message": "cursor must be a whole number (at most 15 digits)",
        "details": {"parameter": "cursor"},
    }
    page = await (await client.get("/api/dashboard/jobs?limit=0&cursor=")).json()  # limit taken as 1
    assert page["jobs"] == [] and page["next_cursor"] is None
