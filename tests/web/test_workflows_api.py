"""``POST /api/workflows`` and ``GET /api/workflows/{id}`` on a real aiohttp server and Redis,
with an in-process worker: a graph runs and passes results, bad graphs get a 422 naming the
node (and the parameter), nothing is written for them."""

from __future__ import annotations

from typing import Any

import pytest

from asyncjobs import Registry, Settings, job
from web.app import CLIENT, create_app


@job
async def words(ctx: Any, text: str) -> int:
    return len(text.split())


@job
async def add_up(ctx: Any, counts: list[int], bonus: int = 0) -> int:
    return sum(counts) + bonus


FUNCTIONS = [words, add_up]


@pytest.fixture
async def wf_api(aiohttp_client: Any, redis_url: str, start_worker: Any) -> Any:
    app = create_app(Settings(redis_url=redis_url), Registry(FUNCTIONS))
    await start_worker(FUNCTIONS)
    return await aiohttp_client(app)


GRAPH = {
    "nodes": [
        {"name": "a", "function": "words", "args": ["one two three"]},
        {"name": "b", "function": "words", "args": ["four five"]},
        {"name": "sum", "function": "add_up", "kwargs": {"bonus": 100}, "depends_on": ["a", "b"], "input": "results"},
    ]
}


async def test_a_graph_runs_and_its_state_is_served(wf_api: Any) -> None:
    r = await wf_api.post("/api/workflows", json=GRAPH)
    body = await r.json()
    assert r.status == 202, body
    wf_id = body["workflow_id"]
    assert r.headers["Location"] == f"/api/workflows/{wf_id}" == body["links"]["self"]
    assert set(body["nodes"]) == {"a", "b", "sum"}
    r = await wf_api.get(f"/api/jobs/{body['nodes']['sum']}/result", params={"timeout": "20"})
    job_body = await r.json()
    assert r.status == 200 and job_body["result"] == 105, job_body
    r = await wf_api.get(f"/api/workflows/{wf_id}")
    state = await r.json()
    assert r.status == 200 and state["state"] == "ended" and state["total"] == 3
    assert [n["state"] for n in state["nodes"]] == ["complete"] * 3
    assert state["nodes"][0]["children"] == [body["nodes"]["sum"]]


@pytest.mark.parametrize(
    ("change", "node", "where"),
    [
        ({"kwargs": {"bonus": "lots"}}, "sum", ["bonus"]),
        ({"function": "nope"}, "sum", ["function"]),
        ({"input": "result"}, "sum", ["input"]),
        ({"args": [1, 2, 3]}, "sum", ["args"]),
    ],
)
async def test_a_bad_node_is_a_422_naming_it_and_nothing_is_written(
    wf_api: Any, change: dict[str, Any], node: str, where: list[str]
) -> None:
    graph = {"nodes": [*GRAPH["nodes"][:2], {**GRAPH["nodes"][2], **change}]}
    r = await wf_api.post("/api/workflows", json=graph)
    body = await r.json()
    assert r.status == 422, body
    error = body["error"]
    assert error["code"] == "invalid_workflow" and error["details"]["node"] == node
    assert f"node {node}" in error["message"]
    locs = [e["loc"] for e in error["details"].get("errors", [])] or [error["details"].get("loc")]
    assert where in locs or where[0] in error["message"]
    redis = wf_api.server.app[CLIENT].redis
    assert await redis.keys("asyncjobs:node:*") == [] and await redis.keys("arq:job:*") == []


async def test_cycles_and_unknown_parents_are_refused(wf_api: Any) -> None:
    """What the schema cannot say about a graph: a cycle is a 409, an unknown parent a 404."""
    cycle = {
        "nodes": [
            {"name": "x", "function": "words", "args": ["a"], "depends_on": ["y"]},
            {"name": "y", "function": "words", "args": ["b"], "depends_on": ["x"]},
        ]
    }
    r = await wf_api.post("/api/workflows", json=cycle)
    body = await r.json()
    assert r.status == 409 and "cycle" in body["error"]["message"], body
    orphan = {"nodes": [{"name": "x", "function": "words", "args": ["a"], "depends_on": ["no-such-job"]}]}
    r = await wf_api.post("/api/workflows", json=orphan)
    body = await r.json()
    assert r.status == 404 and body["error"]["details"]["node"] == "x", body


async def test_unknown_workflow_is_a_404_and_a_taken_id_a_409(wf_api: Any) -> None:
    r = await wf_api.get("/api/workflows/nope")
    assert r.status == 404 and (await r.json())["error"]["code"] == "workflow_not_found"
    graph = {**GRAPH, "workflow_id": "wf-fixed"}
    assert (await wf_api.post("/api/workflows", json=graph)).status == 202
    r = await wf_api.post("/api/workflows", json=graph)
    assert r.status == 409, await r.json()
