"""Server-sent events: a process_csv job followed from start to completion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


async def read_events(response: Any) -> list[tuple[str, dict[str, Any]]]:
    """Parse an event stream until the server ends it."""
    out: list[tuple[str, dict[str, Any]]] = []
    kind, data = "message", ""
    async for raw in response.content:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("event:"):
            kind = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
        elif line == "" and data:
            out.append((kind, json.loads(data)))
            kind, data = "message", ""
    return out


def write_csv(path: Path, rows: int) -> None:
    with path.open("w") as f:
        f.write("id,name,amount\n")
        for i in range(rows):
            f.write(f"{i},name{i},{i * 0.5}\n")


async def test_follow_process_csv_to_completion(api: Any, tmp_path: Path) -> None:
    csv_path = tmp_path / "data.csv"
    write_csv(csv_path, 60_000)
    r = await api.post(
        "/api/jobs",
        json={"function": "process_csv", "args": [str(csv_path)], "kwargs": {"progress_every_s": 0}, "job_id": "csv-1"},
    )
    assert r.status == 202
    async with api.get("/api/jobs/csv-1/events") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/event-stream")
        assert resp.headers["X-Accel-Buffering"] == "no"
        events = await read_events(resp)
    kinds = [k for k, _ in events]
    assert kinds[0] == "state" and kinds[-1] == "complete", kinds
    progress = [d["progress"] for k, d in events if k == "progress"]
    assert len(progress) >= 3, kinds  # 0, several steps, 100
    assert progress == sorted(progress) and progress[-1] == 100
    assert kinds.index("complete") > max(i for i, k in enumerate(kinds) if k == "progress")
    result = await (await api.get("/api/jobs/csv-1/result")).json()
    assert result["result"]["rows"] == 60_000


async def test_finished_job_stream_is_just_its_outcome(api: Any) -> None:
    r = await api.post("/api/jobs", json={"function": "count_words", "args": ["a b"], "job_id": "done-1"})
    assert r.status == 202
    assert (await (await api.get("/api/jobs/done-1/result?timeout=10")).json())["result"] == 2
    async with api.get("/api/jobs/done-1/events") as resp:
        events = await read_events(resp)
    assert [k for k, _ in events] == ["state", "complete"]
    assert events[0][1]["status"] == "complete"


async def test_pings_keep_a_quiet_stream_alive(make_api: Any) -> None:
    api = await make_api(sse_ping=0.05)  # no worker: the job stays queued and the stream stays quiet
    assert (await api.post("/api/jobs", json={"function": "count_words", "args": ["a"], "job_id": "q-1"})).status == 202
    async with api.get("/api/jobs/q-1/events") as resp:
        pings = 0
        async for raw in resp.content:
            if raw.startswith(b": ping"):
                pings += 1
                if pings == 2:
                    break
    assert pings == 2
