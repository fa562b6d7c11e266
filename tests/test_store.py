"""The storage seam: one status decision (:func:`status_of`) for every status, and the store's
one-job and many-jobs reads agreeing on real Redis for jobs in each state."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import asyncjobs
from asyncjobs import JobStatus, Settings, job
from asyncjobs.arq_records import aborted_result, fill_from_job, fill_from_result
from asyncjobs.records import JobRecord
from asyncjobs.serialization import serialize
from asyncjobs.store import RECENT, JobStore, node_status, status_of

NOW = 1_000_000


@pytest.mark.parametrize(
    ("ended", "job_exists", "running", "score", "expected"),
    [
        (None, True, False, NOW + 60_000, JobStatus.DEFERRED),
        (None, True, False, NOW - 5, JobStatus.QUEUED),
        (None, True, False, NOW, JobStatus.QUEUED),  # due now is queued, not deferred
        (None, True, True, NOW + 30_000, JobStatus.IN_PROGRESS),  # a lease re-scores it ahead
        (JobStatus.COMPLETE, False, False, None, JobStatus.COMPLETE),
        (JobStatus.FAILED, True, True, NOW, JobStatus.FAILED),  # the result record decides
        (JobStatus.ABORTED, False, False, None, JobStatus.ABORTED),
        (None, False, False, None, JobStatus.NOT_FOUND),
        (None, False, True, NOW, JobStatus.NOT_FOUND),  # a stale marker without a job
        (None, True, False, None, JobStatus.NOT_FOUND),  # a record in no queue (arq says so too)
    ],
)
def test_one_status_decision_for_every_status(
    ended: JobStatus | None, job_exists: bool, running: bool, score: float | None, expected: JobStatus
) -> None:
    assert status_of(ended, job=job_exists, running=running, score=score, now_ms=NOW) is expected


@pytest.mark.parametrize(
    ("node", "score", "expected"),
    [
        ([b"waiting", None], None, JobStatus.WAITING),  # a workflow node whose parents run
        ([b"cancelled", b"parent failed"], None, JobStatus.ABORTED),
        ([b"skipped", b"condition"], None, JobStatus.ABORTED),
        ([b"queued", None], NOW - 5, JobStatus.QUEUED),  # released: its queue decides
        ([b"queued", None], None, JobStatus.NOT_FOUND),
        (None, None, JobStatus.NOT_FOUND),
    ],
)
def test_a_workflow_node_in_no_queue_has_its_node_status(
    node: list[bytes | None] | None, score: float | None, expected: JobStatus
) -> None:
    status = status_of(None, job=True, running=False, score=score, now_ms=NOW, node=node_status(node))
    assert status is expected


def test_arq_records_decode_or_say_they_cannot() -> None:
    rec = JobRecord("j", JobStatus.NOT_FOUND)
    fill_from_job(rec, serialize({"t": 1, "f": "f", "a": [1], "k": {"x": 2}, "et": 5, "q": "side"}))
    assert (rec.function, rec.args, rec.kwargs, rec.enqueue_ms, rec.queue) == ("f", [1], {"x": 2}, 5, "side")
    fill_from_job(rec, b"\xc1 not msgpack")
    assert rec.function == "<undecodable>"
    done = {"t": 2, "f": "f", "a": [], "k": {}, "et": 1, "st": 2, "ft": 3, "q": "arq:queue:side", "s": True}
    assert fill_from_result(rec, serialize({**done, "r": {1: "a"}})) is JobStatus.COMPLETE
    assert (rec.result, rec.queue, rec.tries, rec.finish_ms) == ({1: "a"}, "side", 2, 3)
    assert fill_from_result(rec, serialize({**done, "s": False, "r": ValueError("no")})) is JobStatus.FAILED
    assert rec.error is not None and rec.error["type"] == "ValueError"
    assert fill_from_result(rec, serialize({**done, "s": False, "r": asyncio.CancelledError()})) is JobStatus.ABORTED
    assert fill_from_result(rec, b"\xc1") is JobStatus.FAILED
    assert rec.error is not None and rec.error["type"] == "SerializationError"


def test_an_aborted_result_record_reads_back_as_aborted() -> None:
    queued = JobRecord("j", JobStatus.QUEUED, function="f", args=[1], kwargs={"x": 2}, tries=1, enqueue_ms=5)
    back = JobRecord("j", JobStatus.NOT_FOUND)
    assert fill_from_result(back, aborted_result(queued, "arq:queue:side", 9)) is JobStatus.ABORTED
    assert (back.function, back.args, back.kwargs, back.queue) == ("f", [1], {"x": 2}, "side")
    assert (back.enqueue_ms, back.start_ms, back.finish_ms, back.tries) == (5, 9, 9, 1)
    assert back.error is not None and back.error["message"] == "aborted before start"


GATE: dict[str, asyncio.Event] = {}


@job(retries=0)
async def hold(ctx: Any, key: str) -> str:
    """Runs until the test opens its gate."""
    GATE.setdefault(key, asyncio.Event())
    await GATE[key].wait()
    return "released"


@job(retries=0)
async def echo(ctx: Any, value: Any) -> Any:
    return value


@job(retries=0)
async def boom(ctx: Any) -> None:
    raise ValueError("boom")


async def _until(predicate: Any, timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.02)


async def test_get_and_many_agree_on_jobs_in_every_state(
    redis_url: str, queue_name: str, start_worker: Any, client: asyncjobs.Client
) -> None:
    settings = Settings(redis_url=redis_url, lease=2.0, poll_delay=0.5, queues=(queue_name,))
    await start_worker([hold, echo, boom], settings=settings)
    run = [
        await client.enqueue(f.options(queue=queue_name), *a)
        for f, a in ((hold, (queue_name,)), (echo, ({1: "a"},)), (boom, ()))
    ]
    await run[1].result(timeout=20)
    with pytest.raises(asyncjobs.JobFailed):
        await run[2].result(timeout=20)
    other = "w" + queue_name  # a queue no worker serves
    waiting = await client.enqueue(echo.options(queue=other), 1)
    later = await client.enqueue(echo.options(queue=other, defer_by=3600), 2)
    aborted = await client.enqueue(echo.options(queue=other), 3)
    assert await aborted.abort(timeout=5)
    node = await client.enqueue(echo.options(queue=other, depends_on=[waiting]), 4)  # waits for `waiting`
    cancelled = await client.enqueue(echo.options(queue=other, depends_on=[waiting]), 5)
    assert await cancelled.abort(timeout=5)
    store = JobStore(client.redis, queues=[other, queue_name])
    await _until(lambda: _is(store, run[0].id, JobStatus.IN_PROGRESS))
    expected = {
        run[0].id: JobStatus.IN_PROGRESS,
        run[1].id: JobStatus.COMPLETE,
        run[2].id: JobStatus.FAILED,
        waiting.id: JobStatus.QUEUED,
        later.id: JobStatus.DEFERRED,
        aborted.id: JobStatus.ABORTED,
        node.id: JobStatus.WAITING,
        cancelled.id: JobStatus.ABORTED,
        "never-enqueued": JobStatus.NOT_FOUND,
    }
    ids = list(expected)
    one_by_one = [await store.get(i) for i in ids]
    together = await store.many(ids)
    assert [r.status for r in one_by_one] == [r.status for r in together] == list(expected.values())
    for a, b in zip(one_by_one, together, strict=True):
        assert a.as_dict() == b.as_dict()
    assert together[1].result == {1: "a"}
    assert together[4].scheduled_ms is not None and together[4].priority == 0
    assert together[0].start_ms is not None and together[3].queue == other
    assert together[7].error is not None and together[7].error["type"] == "Cancelled"
    GATE[queue_name].set()
    assert await run[0].result(timeout=20) == "released"
    assert (await store.get(run[0].id)).status is JobStatus.COMPLETE


async def _is(store: JobStore, job_id: str, status: JobStatus) -> bool:
    return (await store.get(job_id)).status is status


async def test_a_record_that_names_another_queue_is_found_there(client: asyncjobs.Client, queue_name: str) -> None:
    handle = await client.enqueue(echo.options(queue=queue_name), 1)
    store = JobStore(client.redis)  # looks in the default queue only, unless the record names one
    assert (await store.get(handle.id)).status is JobStatus.QUEUED
    assert [r.status for r in await store.many([handle.id])] == [JobStatus.QUEUED]


async def test_job_lists_page_newest_first(client: asyncjobs.Client, queue_name: str) -> None:
    handles = [await client.enqueue(echo.options(queue=queue_name, defer_by=10 * (i + 1)), i) for i in range(3)]
    store = client.store
    waiting = store.waiting_in(queue_name)
    assert waiting.waiting and not RECENT.waiting
    assert (await store.sizes([waiting]))[0] == 3
    assert await store.ids(waiting, 0, 2) == [handles[2].id, handles[1].id]
    assert await store.ids(waiting, 2, 5) == [handles[0].id]
