"""Server-sent events: a process_csv job followed from start to completion."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import redis.asyncio

import asyncjobs


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


# --- streams share one subscription and let go of it ------------------------------------
async def event_channels(r: Any) -> list[bytes]:
    return [c for c in await r.pubsub_channels() if c.startswith(b"asyncjobs:events:")]


async def pubsub_connections(r: Any) -> int:
    """Connections of this Redis that hold any subscription (CLIENT LIST's sub/psub counts)."""
    return sum(1 for c in await r.client_list() if int(c.get("sub", 0)) or int(c.get("psub", 0)))


async def wait_for(check: Any, what: str, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await check():
        assert loop.time() < deadline, f"not within {timeout} s: {what}"
        await asyncio.sleep(0.05)


async def open_raw(host: str, port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """An event stream on a raw socket, returned once its first event has arrived."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    async with asyncio.timeout(10):
        assert (await reader.readline()).startswith(b"HTTP/1.1 200"), path
        while not (await reader.readline()).startswith(b"data:"):
            pass
    return reader, writer


async def enqueue_idle(api: Any, n: int) -> list[str]:
    ids = [f"idle-{uuid.uuid4().hex[:12]}" for _ in range(n)]
    for job_id in ids:
        r = await api.post("/api/jobs", json={"function": "count_words", "args": ["a b"], "job_id": job_id})
        assert r.status == 202
    return ids


async def test_dropped_streams_release_their_subscription(own_redis: Any, start_server: Any) -> None:
    """Against ``asyncjobs web`` itself: unlike aiohttp's test server, it does not cancel a
    handler when its client disconnects."""
    server = start_server("web", env={"REDIS_URL": own_redis.url})
    await server.wait_ready()
    async with asyncjobs.connect(own_redis.url) as client:  # no worker: every stream stays quiet
        ids = [(await client.enqueue_call("count_words", ["a b"])).id for _ in range(20)]
        r = client.redis
        paths = [f"/dashboard/events?job={i}" for i in ids] + [f"/api/jobs/{i}/events" for i in ids]
        conns = [await open_raw("127.0.0.1", server.port, p) for p in paths]
        for _, writer in conns:  # the clients go away without a word
            writer.transport.abort()

        async def released() -> bool:
            return not await event_channels(r) and await r.pubsub_numpat() == 0

        await wait_for(released, "the streams' subscriptions released after their clients left")
        # and at shutdown every stream still open is ended: the server stops at once
        kept = ["/dashboard/events", f"/dashboard/events?job={ids[0]}", f"/api/jobs/{ids[1]}/events"]
        conns = [await open_raw("127.0.0.1", server.port, p) for p in kept]
        server.proc.terminate()
        async with asyncio.timeout(10):
            for reader, writer in conns:
                await reader.read()
                writer.close()
            assert await asyncio.to_thread(server.proc.wait, 10) == 0


async def test_dashboard_stream_of_an_ended_or_unknown_job_sends_its_state_and_closes(
    make_api: Any, redis_url: str
) -> None:
    api = await make_api(worker=True, url=redis_url)
    job_id = f"ended-{uuid.uuid4().hex[:12]}"
    assert (await api.post("/api/jobs", json={"function": "count_words", "args": ["a b"], "job_id": job_id})).status
    assert (await (await api.get(f"/api/jobs/{job_id}/result?timeout=10")).json())["result"] == 2
    for jid, status in ((job_id, "complete"), (f"unknown-{uuid.uuid4().hex[:12]}", "not_found")):
        async with asyncio.timeout(10), api.get(f"/dashboard/events?job={jid}") as resp:
            assert resp.status == 200
            events = await read_events(resp)
        assert [k for k, _ in events] == ["snapshot", "end"], (jid, events)
        assert events[0][1]["status"] == status


async def test_idle_streams_share_one_subscription_and_still_get_their_events(
    own_redis: Any, make_api: Any, run_worker: Any
) -> None:
    api = await make_api(url=own_redis.url)
    r = redis.asyncio.from_url(own_redis.url)
    try:
        ids = await enqueue_idle(api, 60)
        half = len(ids) // 2
        paths = [f"/api/jobs/{i}/events" for i in ids[:half]] + [f"/dashboard/events?job={i}" for i in ids[half:]]
        conns = [await open_raw(api.host, api.port, p) for p in paths]
        # one pattern subscription on one connection, however many streams are open
        assert await r.pubsub_numpat() == 1
        assert await event_channels(r) == []
        assert await pubsub_connections(r) == 1
        await run_worker(own_redis.url)
        for (reader, writer), path in zip(conns, paths, strict=True):
            async with asyncio.timeout(15):
                rest = await reader.read()  # the server ends each stream after the job's end
            writer.close()
            kinds = [line[6:].strip().decode() for line in rest.splitlines() if line.startswith(b"event:")]
            last = "end" if path.startswith("/dashboard") else "complete"
            assert b'"event":"complete"' in rest and kinds[-1] == last, (path, rest)
        await wait_for(lambda: _zero(r.pubsub_numpat()), "the shared subscription released with the last stream")
    finally:
        await r.aclose()


async def _zero(count: Any) -> bool:
    return await count == 0
