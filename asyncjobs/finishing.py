"""Finishing: every job that ends or goes back to its queue in the same event-loop turn is
finished in one Lua call (``scripts.FINISH``): result stored, arq's keys cleaned, and the job's
end written through the lifecycle's end snippet (:mod:`asyncjobs.lifecycle`: event, count,
done message, dead letter, hooks). Every way the engine ends a job comes here, failures before
the function ran included."""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from asyncjobs import deadletter, keys, scripts
from asyncjobs.lifecycle import JobEnd, Outcome
from asyncjobs.serialization import error_to_dict

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
        # stops a job's lease renewal once its finish is written (or failed): until then its
        # lease is kept, so a finish held up by a Redis outage does not let it lapse
        self._release = release
        self._batches: dict[str, _Batch] = {}  # per hash tag of the jobs' queues (one call each)
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
        end: JobEnd | None = None,
    ) -> None:
        """Queue one job's finish for the next batch and wait until it is written. ``end``: how
        the job ended (terminal: event, count, dead letter) or went back to its queue
        (requeued: its event); None: arq's cleanup only."""
        tag = keys.tag_of(queue_key)
        batch = self._batches.get(tag)
        if batch is None:
            batch = self._batches[tag] = _Batch(queue_key)
        keep = "" if keep_in_progress_ms is None else keep_in_progress_ms
        event: bytes | str = ""
        target: int | str = ""
        dead: bytes | str = ""
        if end is not None:
            event = end.event()
            if end.outcome.terminal and done:
                target = batch.targets.setdefault((end.stats_key, end.outcome.value), len(batch.targets) + 1)
                dead = end.dead_letter or ""
        batch.argv += [
            job_id,
            queue_key,
            keep,
            "f" if done else "r",
            result or "",
            result_px,
            retry_score,
            event,
            target,
            dead,
        ]
        batch.releases.append(self._release(job_id))
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        batch.waiters.append(fut)
        if self._task is None:
            self._task = loop.create_task(self._flush())
        await fut

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # let the jobs ending in this loop turn join the batch
            while self._batches:
                batches, self._batches = list(self._batches.values()), {}
                for i, batch in enumerate(batches):
                    try:
                        await self._write(batch)
                    except BaseException:  # cancelled: the batches not yet written fail too
                        for rest in batches[i + 1 :]:
                            rest.fail(RuntimeError("finishing cancelled"))
                        raise
        finally:
            self._task = None

    async def _write(self, batch: _Batch) -> None:
        head: list[Any] = [len(batch.targets)]
        for stats_key, outcome in batch.targets:  # in index order (dicts keep insertion order)
            head += [stats_key, outcome]
        try:
            # KEYS[1]: a queue of the batch, for its hash tag (the tagged layout: asyncjobs.keys)
            await self._script(keys=[batch.queue_key], args=head + batch.argv)
        except BaseException as e:
            for w in batch.waiters:
                if not w.done():
                    w.set_exception(e if isinstance(e, Exception) else RuntimeError("finishing cancelled"))
            if not isinstance(e, Exception):
                raise
            # the waiters have the error; nobody awaits this task, so it must not end
            # with it too (asyncio would log "Task exception was never retrieved")
        finally:
            for release in batch.releases:
                release()
        for w in batch.waiters:
            if not w.done():
                w.set_result(None)


class _Batch:
    """The finishes of one call: jobs whose queues share a hash tag (``keys.tag_of``)."""

    __slots__ = ("argv", "queue_key", "releases", "targets", "waiters")

    def __init__(self, queue_key: str) -> None:
        self.queue_key = queue_key
        self.argv: list[Any] = []
        self.releases: list[Callable[[], None]] = []
        self.targets: dict[tuple[str, str], int] = {}  # (stats hash, outcome) -> index
        self.waiters: list[asyncio.Future[None]] = []

    def fail(self, error: Exception) -> None:
        for release in self.releases:
            release()
        for w in self.waiters:
            if not w.done():
                w.set_exception(error)


def early_end(
    job_id: str,
    queue_key: str,
    failure: Any,
    function: str,
    args: Any,
    kwargs: Any,
    tries: int,
    payload: bytes | None,
    dead_lettered: Callable[[str, str], None] = lambda function, queue: None,
) -> JobEnd:
    """The end of a job that failed before its function ran (``failure``: the error, or what
    arq's result record holds), with its dead letter unless it was aborted; ``dead_lettered``
    is told (function, queue) of a dead letter (metrics)."""
    error = (
        error_to_dict(failure)
        if isinstance(failure, BaseException)
        else {"type": "JobFailed", "message": str(failure), "traceback": None}
    )
    if error["type"] == "CancelledError":
        return JobEnd(job_id, queue_key, Outcome.ABORTED, function)
    queue = keys.queue_name_of(queue_key)
    dead_lettered(function, queue)
    undecodable = function == "<unknown>" and payload is not None
    dead = deadletter.encode_entry(
        job_id=job_id,
        function=function,
        args=args,
        kwargs=kwargs,
        queue=queue,
        tries=tries,
        reason=str(error["message"]),
        error=error,
        raw=payload if undecodable else None,
    )
    return JobEnd(job_id, queue_key, Outcome.FAILED, function, dead)


def decode_result(deserializer: Callable[[bytes], Any] | None, data: bytes | None) -> dict[str, Any]:
    """arq's result record ``data``, decoded with the worker's own deserializer (arq's default:
    pickle), as a dict; ``{}`` when there is none or it cannot be read."""
    if not data:
        return {}
    try:
        info = (deserializer or pickle.loads)(data)
    except Exception:  # any codec, any corrupt input: the caller falls back to what it knows
        logger.warning("a result record (%d bytes) cannot be decoded with the worker's serializer", len(data))
        return {}
    return info if isinstance(info, dict) else {}
