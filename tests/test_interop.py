"""Interop with plain arq, both ways, on the same Redis: arq's client enqueues for our worker,
arq's worker (in-process or the real ``arq`` command) runs jobs our client awaits."""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

import pytest
from arq.connections import RedisSettings, create_pool
from events_support import follow

import asyncjobs
from asyncjobs import Fixed, JobFailed, JobStatus, job, keys
from asyncjobs.examples import count_words
from asyncjobs.serialization import deserialize, serialize

BIN = Path(sys.executable).parent


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def test_job_enqueued_by_arq_runs_on_our_worker_with_our_runtime(client, start_worker, redis_url):
    @job(name=unique("interop"))
    async def interop(ctx, a: int, *, b: int) -> int:
        await ctx.progress(50, "half")
        return a + b

    arq_pool = await create_pool(
        RedisSettings.from_dsn(redis_url), job_serializer=serialize, job_deserializer=deserialize
    )
    try:
        arq_job = await arq_pool.enqueue_job(interop.name, 2, b=3, _job_id=unique("arqjob"))
        assert arq_job is not None
        following = await follow(client.job(arq_job.job_id))
        await start_worker([interop])
        events = await following
        handle = client.job(arq_job.job_id)
        assert await arq_job.result(timeout=10, poll_delay=0.05) == 5  # arq's own Job API
        assert await handle.result(timeout=5) == 5
        state = await arq_pool.hgetall(keys.state(arq_job.job_id))
    finally:
        await arq_pool.aclose()
    assert [e["event"] for e in events] == ["started", "progress", "complete"]
    assert events[1]["message"] == "half"
    assert state[b"try"] == b"1" and state[b"function"] == interop.name.encode() and b"worker" in state


async def test_our_client_awaits_a_job_run_by_plain_arq(client, plain_arq_worker):
    await plain_arq_worker([count_words])
    handle = await client.enqueue(count_words, "run by plain arq")
    assert await handle.result(timeout=10) == 4
    info = await handle.info()
    assert info.status is JobStatus.COMPLETE and info.function == "count_words"
    # the runtime's start hook indexed it for the dashboard, as the engine's claim does
    assert await client.redis.zscore(keys.RECENT, handle.id) is not None
    deadline = asyncio.get_running_loop().time() + 10  # counted with the terminal event
    while await client.redis.hget(keys.stats("default"), "complete") != b"1":
        assert asyncio.get_running_loop().time() < deadline, "the plain arq run was not counted"
        await asyncio.sleep(0.01)


@pytest.mark.own_redis  # SCRIPT FLUSH and INFO commandstats concern the whole server
async def test_plain_arq_start_indexes_jobs_in_its_one_round_trip(client, plain_arq_worker):
    """The runtime's start hook indexes the job inside its pipeline, loading the script after a
    SCRIPT FLUSH, and never asks SCRIPT EXISTS (what a Script object in a pipeline would do)."""

    async def script_exists_calls() -> int:
        stats = await client.redis.info("commandstats")
        return int(stats.get("cmdstat_script|exists", {}).get("calls", 0))

    await client.redis.script_flush()
    before = await script_exists_calls()
    await plain_arq_worker([count_words])
    handles = [await client.enqueue(count_words, f"job {i}") for i in range(5)]
    for h in handles:
        assert await h.result(timeout=10) == 2
    assert await script_exists_calls() == before
    for h in handles:
        assert await client.redis.zscore(keys.RECENT, h.id) is not None


async def test_plain_arq_gets_our_retries_events_and_typed_errors(client, plain_arq_worker):
    tries: list[int] = []

    @job(name=unique("flaky"), retries=2, backoff=Fixed(0.05))
    async def flaky(ctx, fail_always: bool) -> str:
        tries.append(ctx.job_try)
        await ctx.progress(10 * ctx.job_try)
        if fail_always or ctx.job_try < 2:
            raise LookupError(f"try {ctx.job_try}")
        return "ok"

    handle = await client.enqueue(flaky, False)
    following = await follow(handle)
    await plain_arq_worker([flaky])
    events = [e["event"] for e in await following]
    assert await handle.result(timeout=5) == "ok"
    assert tries == [1, 2]
    assert events == ["started", "progress", "retrying", "started", "progress", "complete"]

    tries.clear()
    failing = await client.enqueue(flaky, True)
    with pytest.raises(JobFailed) as exc_info:
        await failing.result(timeout=10)
    assert exc_info.value.error_type == "LookupError" and exc_info.value.error_message == "try 3"
    assert tries == [1, 2, 3]
    total, [entry] = await client.dead_letters()
    assert total == 1 and entry.job_id == failing.id and entry.args == [True]


async def test_arq_command_runs_jobs_and_cli_waits_for_the_result(spawn, redis_url, cli_env):
    arq_proc = spawn(str(BIN / "arq"), "settings.WorkerSettings")
    async with asyncjobs.connect(redis_url) as client:
        handle = await client.enqueue(count_words, "one two")
        assert await handle.result(timeout=20) == 2
        assert arq_proc.poll() is None
    cli = await asyncio.create_subprocess_exec(
        str(BIN / "asyncjobs"),
        "enqueue",
        "count_words",
        "--args",
        '["a b c"]',
        "--wait",
        "--timeout",
        "20",
        cwd=str(Path(__file__).resolve().parents[1]),
        env=cli_env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(cli.communicate(), 30)
    assert cli.returncode == 0, err.decode()
    assert out.decode().strip().splitlines()[-1] == "3"


async def test_plain_arq_delivers_rich_arguments_as_the_annotated_types(client, plain_arq_worker):
    from arguments_support import CASES, FUNCTIONS

    await plain_arq_worker(FUNCTIONS)
    for function, value, _, expected in CASES:
        handle = await client.enqueue(function, value)
        assert await handle.result(timeout=10) == expected, function.name


@pytest.mark.parametrize("kind", ["asyncjobs", "arq"])
async def test_a_user_on_job_end_hook_sees_what_the_job_set_on_its_context(
    kind, client, start_worker, plain_arq_worker
):
    """Values a job stores on its ``JobContext`` (item or attribute) land in the ctx dict arq
    hands to ``on_job_end``, on both workers."""
    seen: dict[str, tuple[object, object, object]] = {}

    async def on_job_end(ctx):
        seen[ctx["job_id"]] = (ctx.get("rows"), ctx.get("note"), ctx.get("total"))

    @job(name=unique("tagged"))
    async def tagged(ctx, n: int) -> int:
        ctx["rows"] = n
        ctx.note = "set as an attribute"
        ctx.setdefault("total", n * 2)
        return n

    if kind == "asyncjobs":
        await start_worker([tagged], on_job_end=on_job_end)
    else:
        await plain_arq_worker([tagged], on_job_end=on_job_end)
    handle = await client.enqueue(tagged, 7)
    assert await handle.result(timeout=10) == 7
    # both workers run on_job_end before they store the result
    assert seen[handle.id] == (7, "set as an attribute", 14)


async def test_a_user_after_job_end_runs_after_the_runtime_s_own(client, plain_arq_worker):
    """``worker_settings(after_job_end=...)`` adds the user's hook after the runtime's (which
    publishes and counts the job's end under plain arq) instead of replacing it."""
    seen: dict[str, object] = {}

    async def after_job_end(ctx):
        seen[ctx["job_id"]] = ctx.get("rows")

    @job(name=unique("after"))
    async def after(ctx, n: int) -> int:
        ctx["rows"] = n
        return n

    await plain_arq_worker([after], after_job_end=after_job_end)
    handle = await client.enqueue(after, 5)
    assert await handle.result(timeout=10) == 5
    deadline = asyncio.get_running_loop().time() + 10
    while handle.id not in seen:  # arq runs after_job_end once the result is stored
        assert asyncio.get_running_loop().time() < deadline, "the user's after_job_end did not run"
        await asyncio.sleep(0.01)
    assert seen[handle.id] == 5
    # the runtime's hook ran first: the end was announced (and counted with it)
    assert await client.redis.hget(keys.stats("default"), "complete") == b"1"
    assert await client.redis.zscore(keys.RECENT, handle.id) is not None


async def test_flow_control_jobs_run_on_plain_arq_and_a_running_job_is_not_replaced(client, plain_arq_worker):
    """Dedupe, debounce and throttle are decided at enqueue: a plain arq worker runs the job that
    won, with the last debounced arguments; once it has started (arq's in-progress marker and
    try counter), a debounced enqueue makes a new job instead of rewriting the running one."""
    started, release = asyncio.Event(), asyncio.Event()

    @job(name=unique("plainflow"))
    async def plainflow(ctx, text: str) -> str:
        started.set()
        await release.wait()
        return text

    await plain_arq_worker([plainflow])
    placed = plainflow.options(debounce=2, dedupe_key="k")
    first = await client.enqueue(placed, "one")
    assert (await client.enqueue(placed, "two")).debounced
    await asyncio.wait_for(started.wait(), 10)
    later = await client.enqueue(placed, "three")
    assert later.admission == "created" and later.id != first.id
    release.set()
    assert await first.result(timeout=10) == "two"
    assert await later.result(timeout=10) == "three"
    deduped = plainflow.options(dedupe_for=30)
    a = await client.enqueue(deduped, "x")
    assert (await client.enqueue(deduped, "x")).deduplicated
    assert await a.result(timeout=10) == "x"
