"""``asyncjobs.Worker``: arq's worker with an event-driven, batched, multi-queue engine.

It keeps arq's Redis protocol (plain arq workers and clients share the same Redis) and
replaces only how jobs are found and claimed:

* **pickup** — workers sleep until an enqueue publishes a wake-up, the next deferred job is
  due, or the fallback poll (for jobs enqueued by plain arq clients) comes round;
* **claiming** — one Lua call claims every due job it has room for, across its queues in
  priority order, giving each an in-progress *lease* and re-scoring it to the lease expiry:
  running jobs leave every worker's due range (no starvation), and a dead worker's jobs are
  due again as soon as the lease lapses (see :mod:`asyncjobs.housekeeping` for renewal);
* **finishing** — arq's ``run_job`` runs the job; finishing removes it from its own queue
  and a retry is re-scored to an absolute time.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal
from typing import Any

from arq.connections import create_pool
from arq.utils import timestamp_ms
from arq.worker import Worker as ArqWorker

from asyncjobs import deadletter, events, keys, scripts
from asyncjobs.events import EventHub
from asyncjobs.housekeeping import Housekeeper
from asyncjobs.runtime import current_queue
from asyncjobs.serialization import RemoteError, deserialize, serialize

logger = logging.getLogger(__name__)


class Worker(ArqWorker):
    """arq's Worker with asyncjobs' engine. Extra parameters:

    :param queues: queue names in priority order (default: the one ``queue_name`` stands for)
    :param lease: seconds a claim lasts unless renewed; a killed worker's job re-runs after it
    :param poll_delay: the fallback poll, for jobs enqueued without a wake-up
    """

    def __init__(self, *args: Any, queues: list[str] | None = None, lease: float = 5.0, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abort_jobs", True)
        super().__init__(*args, **kwargs)
        self.queue_names = list(queues or [keys.queue_name_of(self.queue_name)])
        self.queue_keys = [keys.queue(q) for q in self.queue_names]
        self.queue_name = self.queue_keys[0]
        self.lease_s = float(lease)
        self.running: dict[str, str] = {}  # job id -> queue key
        self._scores: dict[str, int] = {}
        self._wake = asyncio.Event()
        self._background: list[asyncio.Task[Any]] = []
        self.housekeeper = Housekeeper(self)

    # arq picks settings by reading this signature; keep ours and arq's parameters visible
    __signature__ = inspect.Signature(
        [
            *[p for p in inspect.signature(ArqWorker.__init__).parameters.values() if p.kind != p.VAR_KEYWORD],
            inspect.Parameter("queues", inspect.Parameter.KEYWORD_ONLY, default=None),
            inspect.Parameter("lease", inspect.Parameter.KEYWORD_ONLY, default=5.0),
        ][1:]
    )

    # --- main loop ------------------------------------------------------------------------
    async def main(self) -> None:
        if self._pool is None:
            self._pool = await create_pool(
                self.redis_settings, job_serializer=serialize, job_deserializer=deserialize,
                default_queue_name=self.queue_name, expires_extra_ms=self.expires_extra_ms,
            )
        logger.info("worker %s: queues %s, concurrency %d, %d functions", self.housekeeper.worker_id,
                    ",".join(self.queue_names), self.max_jobs, len(self.functions))
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        self._claim = self.pool.register_script(scripts.CLAIM)
        self._hub = EventHub(self.pool)
        loop = asyncio.get_running_loop()
        for q in self.queue_names:
            self._background.append(loop.create_task(self._listen(keys.wake(q), abort=False)))
        if self.allow_abort_jobs:
            self._background.append(loop.create_task(self._listen(keys.ABORT_CHANNEL, abort=True)))
        self._background.append(loop.create_task(self.housekeeper.run()))
        await self._loop()

    async def _loop(self) -> None:
        while True:
            self._wake.clear()
            claimed, earliest = await self._claim_and_start() if self.allow_pick_jobs else (0, None)
            self._reap()
            await self.heart_beat()
            if self.burst and await self._burst_done():
                return
            if claimed and earliest is not None and earliest <= timestamp_ms() and self.job_counter < self.max_jobs:
                continue  # more is due and there is room: claim again at once
            await self._sleep(self._next_wake(earliest, claimed))

    async def _claim_and_start(self) -> tuple[int, int | None]:
        room = self.max_jobs - self.job_counter
        if self.burst and self.max_burst_jobs >= 0:
            room = min(room, self.max_burst_jobs - self._jobs_started())
        if room <= 0:
            return 0, None
        now = timestamp_ms()
        found, earliest = await self._claim(
            keys=self.queue_keys, args=[now, int(self.lease_s * 1000), room, keys.in_progress(""), room + 100]
        )
        for i in range(0, len(found), 3):
            self._start(found[i + 1].decode(), self.queue_keys[int(found[i]) - 1], int(float(found[i + 2])))
        return len(found) // 3, int(float(earliest)) if earliest else None

    def _start(self, job_id: str, queue_key: str, score: int) -> None:
        self.job_counter += 1
        self.running[job_id] = queue_key
        self._scores[job_id] = score
        token = current_queue.set(keys.queue_name_of(queue_key))
        try:
            task = asyncio.get_running_loop().create_task(self.run_job(job_id, score))
        finally:
            current_queue.reset(token)
        task.add_done_callback(lambda _: self._job_done(job_id))
        self.tasks[job_id] = task

    def _job_done(self, job_id: str) -> None:
        self.job_counter -= 1
        self.running.pop(job_id, None)
        self._scores.pop(job_id, None)
        self._wake.set()

    def _reap(self) -> None:
        for job_id, t in list(self.tasks.items()):
            if t.done():
                del self.tasks[job_id]
                t.result()

    def _next_wake(self, earliest: int | None, claimed: int) -> float:
        wait = self.poll_delay_s
        if earliest is not None and self.job_counter < self.max_jobs:
            wait = min(wait, max(0.0, (earliest - timestamp_ms()) / 1000))
            if wait == 0.0 and not claimed:
                wait = self.poll_delay_s  # due jobs held by plain arq workers: do not spin
        for cj in self.cron_jobs:
            if cj.next_run is not None:
                wait = min(wait, max(0.0, (cj.next_run.timestamp() - 1.0) - timestamp_ms() / 1000))
        return max(wait, 0.0)

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def _burst_done(self) -> bool:
        if 0 <= self.max_burst_jobs <= self._jobs_started() or not self.tasks:
            if self.tasks:
                await asyncio.gather(*self.tasks.values())
            if 0 <= self.max_burst_jobs <= self._jobs_started():
                return True
            now = timestamp_ms()
            due = sum([await self.pool.zcount(k, "-inf", now) for k in self.queue_keys])
            return due == 0
        return False

    async def _listen(self, channel: str, *, abort: bool) -> None:
        async with self._hub.subscribe(channel) as queue:
            while True:
                await queue.get()
                if abort:
                    await self._cancel_aborted_jobs()
                else:
                    self._wake.set()

    # --- finishing --------------------------------------------------------------------------
    async def finish_job(
        self,
        job_id: str,
        finish: bool,
        result_data: bytes | None,
        result_timeout_s: float | None,
        keep_result_forever: bool,
        incr_score: int | None,
        keep_in_progress: float | None,
    ) -> None:
        queue_key = self.running.get(job_id, self.queue_name)
        async with self.pool.pipeline(transaction=True) as tr:
            in_progress = keys.in_progress(job_id)
            if keep_in_progress is None:
                tr.delete(in_progress)
            else:
                tr.pexpire(in_progress, int(keep_in_progress * 1000))
            if finish:
                if result_data:
                    px = None if keep_result_forever else int((result_timeout_s or 0) * 1000) or None
                    tr.set(keys.result(job_id), result_data, px=px)
                tr.delete(keys.retry(job_id), keys.job(job_id))
                tr.zrem(keys.ARQ_ABORT, job_id)
                tr.zrem(queue_key, job_id)
            else:  # retry: due again at once, or after the Retry's delay
                score = self._scores.get(job_id, timestamp_ms())
                tr.zadd(queue_key, {job_id: score + incr_score if incr_score else timestamp_ms()}, xx=True)
            await tr.execute()

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        """A job that failed before its function ran: expired, unknown function, undecodable
        payload, too many tries, or aborted before start. All but the abort are dead-lettered."""
        queue_key = self.running.get(job_id, self.queue_name)
        async with self.pool.pipeline(transaction=True) as tr:
            tr.get(keys.job(job_id))
            tr.get(keys.retry(job_id))
            tr.delete(keys.retry(job_id), keys.in_progress(job_id), keys.job(job_id))
            tr.zrem(keys.ARQ_ABORT, job_id)
            tr.zrem(queue_key, job_id)
            if result_data is not None and (self.keep_result_forever or self.keep_result_s > 0):
                px = None if self.keep_result_forever else int(self.keep_result_s * 1000)
                tr.set(keys.result(job_id), result_data, px=px)
            raw, tries, *_ = await tr.execute()
        await self._dead_letter_early_failure(job_id, queue_key, raw, int(tries or 0), result_data)

    async def _dead_letter_early_failure(
        self, job_id: str, queue_key: str, raw: bytes | None, tries: int, result_data: bytes | None
    ) -> None:
        info = deserialize(result_data) if result_data else {}
        err = info.get("r")
        error = err.as_dict() if isinstance(err, RemoteError) else {"type": "JobFailed", "message": str(err), "traceback": None}
        aborted = error["type"] == "CancelledError"
        if not aborted:
            undecodable = info.get("f") == "<unknown>" and raw is not None
            await deadletter.record(
                self.pool, job_id=job_id, function=str(info.get("f") or "<unknown>"), args=info.get("a"),
                kwargs=info.get("k"), queue=keys.queue_name_of(queue_key), tries=tries,
                reason=error["message"], error=error, raw=raw if undecodable else None,
            )
        event = events.ABORTED if aborted else events.FAILED
        await self.pool.publish(keys.events(job_id), events.encode(job_id, event, function=info.get("f")))

    # --- shutdown ---------------------------------------------------------------------------
    async def close(self) -> None:
        for t in self._background:
            t.cancel()
        for t in self._background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._background.clear()
        if self._pool is not None:
            await self.housekeeper.unregister()
        hub = getattr(self, "_hub", None)
        if hub is not None:
            await hub.close()
        # arq's close(), with redis-py's non-deprecated aclose()
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        await self.pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None

