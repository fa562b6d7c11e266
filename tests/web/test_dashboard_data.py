"""What the dashboard shows of a job, against what the API shows: the same record, whatever
its values (msgpack carries dicts with integer keys, which JSON has to write as strings)."""

from __future__ import annotations

from typing import Any

from asyncjobs import job
from asyncjobs.examples import FUNCTIONS
from web.state import CLIENT


@job(retries=0)
async def mirror(ctx: Any, value: Any) -> Any:
    """Returns its argument."""
    return value


async def _stream_events(resp: Any) -> list[tuple[str, str]]:
    """``(event, data)`` pairs until the stream closes."""
    out, kind = [], ""
    async for raw in resp.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event: "):
            kind = line[len("event: ") :]
        elif line.startswith("data: "):
            out.append((kind, line[len("data: ") :]))
    return out


async def test_integer_dict_keys_show_on_the_dashboard_and_the_api(make_api: Any) -> None:
    api = await make_api(worker=True, functions=[*FUNCTIONS, mirror])
    handle = await api.server.app[CLIENT].enqueue(mirror, {1: "a"})
    assert await handle.result(timeout=20) == {1: "a"}

    record = await api.get(f"/api/jobs/{handle.id}")
    assert record.status == 200
    body = await record.json()
    assert body["status"] == "complete" and body["result"] == {"1": "a"} and body["args"] == [{"1": "a"}]

    listed = await api.get("/api/dashboard/jobs")
    assert listed.status == 200, await listed.text()
    row = next(j for j in (await listed.json())["jobs"] if j["job_id"] == handle.id)
    assert row["status"] == "complete" and row["args"] == '{"args":[{"1":"a"}],"kwargs":{}}'

    stream = await api.get(f"/dashboard/events?job={handle.id}")
    assert stream.status == 200
    events = await _stream_events(stream)
    assert [kind for kind, _ in events] == ["snapshot", "end"]
    assert '"result":{"1":"a"}' in events[0][1]


async def test_the_jobs_page_and_the_api_agree_on_status(make_api: Any) -> None:
    api = await make_api()  # no worker: jobs wait
    due = await (await api.post("/api/jobs", json={"function": "count_words", "args": ["a"]})).json()
    later = await (
        await api.post("/api/jobs", json={"function": "count_words", "args": ["b"], "defer_by": 3600})
    ).json()
    rows = {j["job_id"]: j["status"] for j in (await (await api.get("/api/dashboard/jobs")).json())["jobs"]}
    for created in (due, later):
        shown = await (await api.get(f"/api/jobs/{created['job_id']}")).json()
        assert rows[created["job_id"]] == shown["status"] == created["status"]
    assert rows[later["job_id"]] == "deferred" and rows[due["job_id"]] == "queued"
