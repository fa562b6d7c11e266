"""Workflows on a real Redis with in-process workers: chains pass results, chords fan in once
with results in order, failure policies, dependencies, cycles, abort, callbacks, events."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from reliability_support import wait_for

import asyncjobs
from asyncjobs import InvalidWorkflow, JobAborted, JobFailed, JobStatus, chain, chord, group, job, keys
from asyncjobs.scripts import END_PLAIN
from asyncjobs.workflows import LUA_ON_END


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@job
async def parse(ctx: Any, path: str) -> list[int]:
    return [len(part) for part in path.split("/")]


@job
async def total(ctx: Any, rows: list[int], scale: int = 1) -> int:
    return sum(rows) * scale


@job
async def describe(ctx: Any, value: int, prefix: str) -> str:
    return f"{prefix}{value}"


@job
async def square(ctx: Any, x: int) -> int:
    return x * x


@job
async def collect(ctx: Any, results: list[Any]) -> list[Any]:
    await ctx.redis.incr(f"calls:{ctx.job_id}")
    return [r if not isinstance(r, JobFailed) else f"error:{r.error_type}" for r in results]


@job
async def boom(ctx: Any, x: int) -> int:
    raise ValueError(f"boom {x}")


@job
async def mark(ctx: Any, *args: Any) -> str:
    await ctx.redis.rpush("marks", ctx.job_id)
    return "marked"


@job
async def hold(ctx: Any, key: str) -> str:
    await ctx.redis.rpush(f"{key}:started", ctx.job_id)
    await ctx.redis.blpop([f"{key}:go"], timeout=30)
    return "held"


FUNCTIONS = [parse, total, describe, square, collect, boom, mark, hold]


@pytest.fixture
async def workers(start_worker: Any) -> None:
    await start_worker(FUNCTIONS)
    await start_worker(FUNCTIONS)


async def test_a_chain_passes_each_result_to_the_next_step(client, workers):
    wf = await chain(parse.s("ab/cde/f"), total.s(scale=10), describe.s("total=")).enqueue(client)
    assert await wf.result(timeout=20) == "total=60"
    status = await wf.status()
    assert status.state == "ended" and status.total == 3 and status.ended == 3 and status.failed == 0
    assert [n.state for n in status.nodes] == ["complete"] * 3
    assert status.nodes[0].children == [status.nodes[1].job_id]
    for n in status.nodes:  # each node's record names its workflow (the dashboard links it)
        assert (await client.job(n.job_id).info()).workflow == wf.id
    # once ended, the workflow's state is kept as long as its results (keep_result, 1 h here)
    for key in (keys.workflow(wf.id), keys.workflow_nodes(wf.id), keys.node(status.nodes[0].job_id)):
        assert 0 < await client.redis.pttl(key) <= 3_600_000


async def test_si_ignores_the_previous_result(client, workers):
    wf = await chain(square.s(3), square.si(4)).enqueue(client)
    assert await wf.result(timeout=20) == 16


async def test_a_chord_calls_back_once_with_results_in_group_order(client, workers):
    wf = await chord([square.s(i) for i in range(30)], collect.s()).enqueue(client)
    assert await wf.result(timeout=30) == [i * i for i in range(30)]
    callback = (await wf.status()).nodes[-1].job_id
    assert await client.redis.get(f"calls:{callback}") == b"1"


async def test_a_group_result_is_the_list_of_its_members(client, workers):
    wf = await group([square.s(2), chain(square.s(3), square.s())]).enqueue(client)
    assert await wf.result(timeout=20) == [4, 81]


async def test_a_failed_step_stops_the_chain_and_cancels_the_rest_with_the_reason(client, workers):
    wf = await chain(square.s(2), boom.s(), square.s(), square.s()).enqueue(client)
    with pytest.raises(JobFailed) as e:
        await wf.result(timeout=20)
    assert e.value.error_type == "ValueError" and "boom 4" in e.value.error_message
    status = await wf.status()
    assert [n.state for n in status.nodes] == ["complete", "failed", "cancelled", "cancelled"]
    failed_id = status.nodes[1].job_id
    assert status.nodes[2].reason == f"{failed_id} failed"
    assert status.nodes[3].reason == f"{status.nodes[2].job_id} cancelled"
    assert status.state == "ended" and status.failed_node == failed_id
    rec = await client.job(status.nodes[3].job_id).info()
    assert rec.status is JobStatus.ABORTED and rec.error and rec.error["type"] == "Cancelled"
    with pytest.raises(JobAborted):
        await client.job(status.nodes[3].job_id).result(timeout=5)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("pass_errors", [0, "error:ValueError", 4]), ("ignore_failures", [0, 4])],
)
async def test_chord_policies_that_wait_for_all(client, workers, policy, expected):
    header = [square.s(0), boom.s(1), square.s(2)]
    wf = await chord(header, collect.s(), policy=policy).enqueue(client)
    assert await wf.result(timeout=20) == expected


async def test_chord_fail_fast_cancels_the_callback_at_the_first_failure(client, workers):
    key = unique("ff")
    wf = await chord([boom.s(1), hold.s(key)], collect.s()).enqueue(client)
    with pytest.raises(JobFailed) as e:  # raised while a member still runs
        await wf.result(timeout=20)
    assert e.value.error_type == "ValueError"
    status = await wf.status()
    assert status.nodes[-1].state == "cancelled" and status.state == "running"
    await client.redis.rpush(f"{key}:go", 1)
    await wait_for(lambda: _ended(wf), "the held member to end")
    assert [n.state for n in (await wf.status()).nodes] == ["failed", "complete", "cancelled"]


async def _subscribers(client: asyncjobs.Client, channel: str) -> int:
    return int(dict(await client.redis.pubsub_numsub(channel)).get(channel.encode(), 0))


async def _ended(wf: asyncjobs.Workflow) -> bool:
    return (await wf.status()).state == "ended"


async def test_depends_on_waits_for_outside_jobs_then_runs(client, start_worker):
    key = unique("dep")
    a = await client.enqueue(hold, key)
    b = await client.enqueue(square, 5)
    waiting = await client.enqueue(mark.options(depends_on=[a, b.id]))
    assert await waiting.status() is JobStatus.WAITING
    # a job with dependencies is a workflow of one node; its parents are in none
    info = await waiting.info()
    assert info.workflow == waiting.id and await client.redis.exists(keys.workflow(waiting.id))
    assert info.queue == "default"  # in no queue yet: its node says where it will go
    assert (await b.info()).workflow is None
    await start_worker(FUNCTIONS)
    assert await b.result(timeout=10) == 25
    await wait_for(lambda: client.redis.llen(f"{key}:started"), "a to start")
    assert await waiting.status() is JobStatus.WAITING  # not queued before its last parent ends
    await client.redis.rpush(f"{key}:go", 1)
    assert await waiting.result(timeout=10) == "marked"


async def test_depends_on_a_job_that_already_ended(client, workers):
    done = await client.enqueue(square, 2)
    assert await done.result(timeout=10) == 4
    later = await client.enqueue(mark.options(depends_on=[done]))
    assert await later.result(timeout=10) == "marked"
    failed = await client.enqueue(boom, 1)
    with pytest.raises(JobFailed):
        await failed.result(timeout=10)
    never = await client.enqueue(mark.options(depends_on=[failed]))
    with pytest.raises(JobAborted, match="failed"):
        await never.result(timeout=10)


async def test_unknown_parents_and_cycles_are_refused_before_anything_is_written(client):
    with pytest.raises(InvalidWorkflow, match="no-such-job, which does not exist") as e:
        await client.enqueue(mark.options(job_id=unique("orphan"), depends_on=["no-such-job"]))
    assert e.value.node and e.value.node.startswith("orphan")
    a = mark.options(job_id="node-a", depends_on=["node-b"]).si()
    b = mark.options(job_id="node-b", depends_on=["node-a"]).si()
    with pytest.raises(InvalidWorkflow, match="cycle"):
        await group([a, b]).enqueue(client)
    assert await client.redis.keys("*") == []


async def test_a_taken_job_id_refuses_the_workflow_and_what_was_written_is_removed(client):
    taken = unique("taken")
    await client.enqueue(square.options(job_id=taken), 1)
    steps = [square.s(i) for i in range(600)]  # more than one batch of nodes before the taken one
    with pytest.raises(InvalidWorkflow, match=f"job id {taken} is taken"):
        await group([*steps, square.options(job_id=taken).s(2)]).enqueue(client)
    assert await client.redis.keys("asyncjobs:node:*") == []
    assert await client.redis.keys("arq:job:*") == [f"arq:job:{taken}".encode()]


async def test_flow_control_options_are_refused_on_nodes(client):
    with pytest.raises(InvalidWorkflow, match="do not apply to a workflow node"):
        await chain(square.s(1), square.options(dedupe_for=60).s()).enqueue(client)
    assert await client.redis.keys("*") == []


async def test_arguments_are_checked_per_node_naming_the_parameter(client):
    with pytest.raises(InvalidWorkflow) as e:
        await chain(parse.s("x"), total.s(scale="ten")).enqueue(client)
    assert "node 1 (total" in str(e.value) and e.value.errors[0]["loc"] == ["scale"]
    with pytest.raises(InvalidWorkflow, match="takes at most 1"):
        await chain(parse.s("x"), square.s(1)).enqueue(client)
    assert await client.redis.keys("*") == []


async def test_abort_cancels_waiting_nodes_and_aborts_running_ones(client, workers):
    key = unique("ab")
    wf = await chain(hold.s(key), square.si(2), square.s()).enqueue(client)
    await wait_for(lambda: client.redis.llen(f"{key}:started"), "the first step to start")
    assert await wf.abort(timeout=10) == 3
    status = await wf.status()
    assert [n.state for n in status.nodes] == ["aborted", "cancelled", "cancelled"]
    assert status.aborted and status.state == "ended"
    with pytest.raises(JobAborted):
        await wf.result(timeout=5)


async def test_callbacks_on_success_failure_and_complete(client, workers):
    ok = await square.s(3).on_success(mark.s()).on_failure(mark.s()).on_complete(mark.s()).enqueue(client)
    assert await ok.result(timeout=10) == 9
    await wait_for(lambda: _ended(ok), "the callbacks to end")
    assert [n.state for n in (await ok.status()).nodes] == ["complete", "complete", "skipped", "complete"]
    batch = group([square.s(1), boom.s(2)]).on_success(mark.s()).on_failure(collect.s())
    bad = await batch.enqueue(client)
    await wait_for(lambda: _ended(bad), "the batch callbacks to end")
    nodes = (await bad.status()).nodes
    assert [n.state for n in nodes] == ["complete", "failed", "skipped", "complete"]
    assert await client.job(nodes[3].job_id).result(timeout=5) == [1, "error:ValueError"]


async def test_events_follow_the_workflow_to_its_end(client, workers):
    key = unique("ev")
    wf = await chain(hold.s(key), mark.s()).enqueue(client)  # the first step waits for "go"

    async def follow() -> list[dict[str, Any]]:
        return [e async for e in wf.events(timeout=20)]

    following = asyncio.get_running_loop().create_task(follow())
    channel = keys.workflow_events(wf.id)
    await wait_for(lambda: _subscribers(client, channel), "the event stream to subscribe")
    await client.redis.rpush(f"{key}:go", 1)
    kinds = [(e.get("job_id"), e["event"]) for e in await following]
    first, second = (n.job_id for n in (await wf.status()).nodes)
    assert (second, "queued") in kinds and (first, "complete") in kinds and (second, "complete") in kinds
    assert kinds[-1][1] == "workflow_ended"


async def test_an_end_reported_twice_does_not_fire_the_fan_in_twice(client):
    """The end hook run twice for each child (a finish whose reply was lost, sent again): the
    callback is queued once, each child counted once."""
    wf = await chord([square.s(1), square.s(2)], collect.s()).enqueue(client)
    nodes = (await wf.status()).nodes
    queue = keys.queue("default")
    on_end = client.redis.register_script(LUA_ON_END + "workflow_on_end(ARGV[1], ARGV[2], ARGV[3])")
    await client.redis.zrem(queue, nodes[0].job_id, nodes[1].job_id)
    for n in [nodes[0], nodes[0], nodes[1], nodes[1], nodes[0]]:
        await on_end(args=[n.job_id, queue, "complete"])
    callback = nodes[2].job_id
    assert await client.redis.zrange(queue, 0, -1) == [callback.encode()]
    node = await client.redis.hgetall(keys.node(callback))
    assert node[b"done"] == b"2" and node[b"st"] == b"queued"
    assert await client.redis.hget(keys.workflow(wf.id), "ended") == b"2"


async def test_the_end_script_sent_twice_queues_the_callback_once(client):
    """The lifecycle's end script (the plain-arq one, without its own per-run guard) called
    twice for each child: the fan-in counts each child once and queues the callback once."""
    wf = await chord([square.s(1), square.s(2)], collect.s()).enqueue(client)
    nodes = (await wf.status()).nodes
    queue = keys.queue("default")
    end = client.redis.register_script(END_PLAIN)
    await client.redis.zrem(queue, nodes[0].job_id, nodes[1].job_id)
    for n in [nodes[0], nodes[1], nodes[1], nodes[0]]:
        await end(args=[n.job_id, queue, "complete", b"{}", keys.stats("default"), b"", ""])
    callback = nodes[2].job_id
    assert await client.redis.zrange(queue, 0, -1) == [callback.encode()]
    assert await client.redis.hget(keys.node(callback), "done") == b"2"
    assert await client.redis.hget(keys.workflow(wf.id), "ended") == b"2"


async def test_nodes_wait_outside_the_queue_until_released(client):
    wf = await chain(square.s(2), square.s()).enqueue(client)
    first, second = (n.job_id for n in (await wf.status()).nodes)
    queue = keys.queue("default")
    assert await client.redis.zscore(queue, first) is not None
    assert await client.redis.zscore(queue, second) is None  # no worker, plain arq included, sees it
    assert await client.redis.exists(keys.job(second)) == 1
    assert 0 < await client.redis.pttl(keys.job(second)) <= 86_400_000
    assert await client.job(second).status() is JobStatus.WAITING


async def test_aborting_a_waiting_node_cancels_it_and_what_follows(client):
    wf = await chain(square.s(2), square.s(), square.s()).enqueue(client)
    _, second, third = (n.job_id for n in (await wf.status()).nodes)
    assert await client.job(second).abort(timeout=5) is True
    status = await wf.status()
    assert [n.state for n in status.nodes] == ["queued", "cancelled", "cancelled"]
    assert status.nodes[1].reason == "aborted" and status.nodes[2].reason == f"{second} cancelled"
    with pytest.raises(JobAborted):
        await client.job(third).result(timeout=5)
