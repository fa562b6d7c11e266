"""Finishing: every job that ends in the same event-loop turn is finished in one Lua call
(``scripts.FINISH``): result stored, arq's keys cleaned, terminal event published. Jobs that
fail before their function runs take the slower path, with a dead letter."""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from asyncjobs import deadletter, events, keys, limits, scripts
from asyncjobs.context import CTX_RUNTIME
from asyncjobs.serialization import error_to_dict

if TYPE_CHECKING:
    from asyncjobs.worker import Worker

logger = logging.getLogger(__name__)
T = TypeVar("T")


def shielded(coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """``asyncio.shield(coro)``, for a finish that must outlive a cancelled job task: if the
    caller was cancelled meanwhile, nobody awaits the inner task, so its error is logged here
    (at DEBUG: the job is recovered by its lease) instead of as "never retrieved"."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(_note_error)
    return asyncio.shield(task)


def _nothing() -> None:
    pass


def _note_error(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("finishing a job failed: %r", task.exception())


class Finisher:
    """Collects finished jobs and writes them in batches, one round trip per batch."""

    def __init__(self, redis: Any, release: Callable[[str], Callable[[], None]] = lambda job_id: _nothing) -> None:
        self._script = redis.register_script(scripts.FINISH)
        self._release_script = redis.register_script(limits.RELEASE)
        # stops a job's lease renewal once its finish is written (or failed): until then its
        # lease is kept, so a finish held up by a Redis outage does not let it lapse
        self._release = release
        self._head = [keys.in_progress(""), keys.job(""), keys.retry(""), keys.result(""), keys.events("")]
        self._argv: list[Any] = []
        self._releases: list[Callable[[], None]] = []
        self._targets: dict[tuple[str, str], int] = {}  # (stats hash, outcome) -> index, per batch
        self._waiters: list[asyncio.Future[None]] = []
        self._task: asyncio.Task[None] | None = None

    async def finish(
        self,
        job_id: str,
        queue_key: str,
        *,
        done: bool,
        result: bytes | None = None,
        result_px: int = 0,
        retry_score: int = 0,
        keep_in_progress_ms: int | None = None,
        event: bytes | None = None,
        count: tuple[str, str] | None = None,
    ) -> None:
        """Queue one job's finish for the next batch and wait until it is written. ``count``:
        (stats hash, outcome) to count the job in."""
        keep = "" if keep_in_progress_ms is None else keep_in_progress_ms
        target = "" if count is None else self._targets.setdefault(count, len(self._targets) + 1)
        self._argv += [
            job_id,
            queue_key,
            keep,
            "f" if done else "r",
            result or "",
            result_px,
            retry_score,
            event or "",
            target,
        ]
        self._releases.append(self._release(job_id))
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._waiters.append(fut)
        if self._task is None:
            self._task = loop.create_task(self._flush())
        await fut

    async def release_one(self, job_id: str, queue_key: str) -> None:
        """Release what ``job_id`` held (its flow-control slots), for an end written without
        ``FINISH``; a crash before it leaves the slot to be pruned once its lease lapsed."""
        await self._release_script(keys=[queue_key], args=[job_id])

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let the jobs ending in this loop turn join the batch
            while self._waiters:
                argv, waiters, targets, releases = self._argv, self._waiters, self._targets, self._releases
                self._argv, self._waiters, self._targets, self._releases = [], [], {}, []
                head = [*self._head, len(targets)]
                for stats_key, outcome in targets:  # in index order (dicts keep insertion order)
                    head += [stats_key, outcome]
                try:
                    await self._script(keys=[keys.ARQ_ABORT], args=head + argv)
                except BaseException as e:
                    for w in waiters:
                        if not w.done():
                            w.set_exception(e if isinstance(e, Exception) else RuntimeError("finishing cancelled"))
                    if not isinstance(e, Exception):
                        raise
                    # the waiters have the error; nobody awaits this task, so it must not end
                    # with it too (asyncio would log "Task exception was never retrieved")
                finally:
                    for release in releases:
                        release()
                for w in waiters:
                    if not w.done():
                        w.set_result(None)
        finally:
            self._task = None


def failed_result_retention(worker: Worker, function: str) -> tuple[bool, int | None]:
    """(keep?, ttl ms) for an early failure's result: the function's ``keep_result`` when the
    function is known (arq uses the worker's default here), else the worker's."""
    forever, seconds = worker.keep_result_forever, worker.keep_result_s
    fn = worker.functions.get(function)
    if fn is not None and fn.keep_result_s is not None:
        forever, seconds = bool(fn.keep_result_forever), fn.keep_result_s
    return forever or seconds > 0, None if forever else int(seconds * 1000)


def decode_result(worker: Worker, data: bytes | None) -> dict[str, Any]:
    """arq's result record ``data``, decoded with the worker's own deserializer (arq's default:
    pickle), as a dict; ``{}`` when there is none or it cannot be read."""
    if not data:
        return {}
    try:
        info = (worker.job_deserializer or pickle.loads)(data)
    except Exception:  # any codec, any corrupt input: the caller falls back to what it knows
        logger.warning("a result record (%d bytes) cannot be decoded with the worker's serializer", len(data))
        return {}
    return info if isinstance(info, dict) else {}


async def finish_failed(
    worker: Worker, job_id: str, queue_key: str, result_data: bytes | None, info: dict[str, Any] | None = None
) -> None:
    """A job that failed before its function ran: expired, unknown function, undecodable
    payload, too many tries, or aborted before start. All but the abort are dead-lettered.
    ``info``: the result record's fields (``f``, ``a``, ``k``, ``r``) when the caller has them;
    otherwise ``result_data`` is decoded with the worker's serializer."""
    info = decode_result(worker, result_data) if info is None else info
    err = info.get("r")
    error = (
        error_to_dict(err)
        if isinstance(err, BaseException)
        else {"type": "JobFailed", "message": str(err), "traceback": None}
    )
    aborted = error["type"] == "CancelledError"
    event = events.ABORTED if aborted else events.FAILED
    function = str(info.get("f") or "<unknown>")
    worker.leases.discard(job_id)
    # the dead letter is written before the job's keys are deleted and its result shown: a
    # crash in between leaves the job to be claimed and dead-lettered again (the same entry),
    # never gone without a record, and whoever sees the failed result finds its dead letter
    async with worker.pool.pipeline(transaction=False) as read:
        read.get(keys.job(job_id))
        read.get(keys.retry(job_id))
        raw, tries = await read.execute()
    if not aborted:
        undecodable = function == "<unknown>" and raw is not None
        runtime = worker.ctx.get(CTX_RUNTIME) if worker.ctx else None
        if runtime is not None:
            runtime.metrics.dead_letter(function, keys.queue_name_of(queue_key))
        await deadletter.record(
            worker.pool,
            job_id=job_id,
            function=function,
            args=info.get("a"),
            kwargs=info.get("k"),
            queue=keys.queue_name_of(queue_key),
            tries=int(tries or 0),
            reason=str(error["message"]),
            error=error,
            raw=raw if undecodable else None,
        )
    async with worker.pool.pipeline(transaction=True) as tr:
        tr.delete(keys.retry(job_id), keys.in_progress(job_id), keys.job(job_id))
        tr.zrem(keys.ARQ_ABORT, job_id)
        tr.zrem(queue_key, job_id)
        tr.zrem(keys.leases(queue_key), job_id)
        keep, px = failed_result_retention(worker, function)
        if result_data is not None and keep:
            tr.set(keys.result(job_id), result_data, px=px)
        await tr.execute()
    await worker.finisher.release_one(job_id, queue_key)
    async with worker.pool.pipeline(transaction=False) as pipe:
        events.announce_end(pipe, job_id, keys.queue_name_of(queue_key), event, info.get("f"))
        await pipe.execute()
