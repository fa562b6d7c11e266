"""``asyncjobs.Worker``: arq's worker with an event-driven, batched, multi-queue engine.

It keeps arq's Redis protocol (plain arq workers and clients share the same Redis) and
replaces only how jobs are found and claimed:

* **pickup** — workers sleep until an enqueue publishes a wake-up, the next deferred job is
  due, or the fallback poll (for jobs enqueued by plain arq clients) comes round;
* **claiming** — one Lua call claims every due job it has room for, across its queues in
  priority order, giving each an in-progress *lease* and re-scoring it to the lease expiry:
  running jobs leave every worker's due range (no starvation), and a dead worker's jobs are
  due again as soon as the lease lapses, back at the scores they were claimed at (see
  :mod:`asyncjobs.leases` for renewal);
* **running** — :class:`asyncjobs.running.JobRunner`, arq's ``run_job`` in small steps, fed by
  the claim;
* **finishing** — :mod:`asyncjobs.finishing`: jobs ending together are finished in one call,
  with their ends (:mod:`asyncjobs.lifecycle`); a retry is re-scored to an absolute time.

Those parts are built here, in ``__init__``, each from the few things it needs (the pool is
reached through a :class:`~asyncjobs.pool_ref.PoolRef`: arq opens it in ``main()``); none of
them imports this module. The worker has one id (:func:`~asyncjobs.housekeeping.new_worker_id`):
its leases' owner, its registry entry and the ``worker`` of the jobs it starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import signal
import time
from datetime import datetime
from typing import Any

from arq.connections import create_pool
from arq.utils import timestamp_ms
from arq.worker import Worker as ArqWorker
from redis.exceptions import RedisError

from asyncjobs import keys
from asyncjobs.backoff import Retrying
from asyncjobs.claiming import Claimed, Claimer
from asyncjobs.cluster import check_tagged, is_cluster
from asyncjobs.connections import UNAVAILABLE, give_up_reconnecting
from asyncjobs.events import EventHub
from asyncjobs.finishing import Finisher, decode_result
from asyncjobs.housekeeping import Housekeeper, new_worker_id
from asyncjobs.leases import LeaseKeeper
from asyncjobs.pool_ref import PoolRef
from asyncjobs.running import JobCounters, JobDefaults, JobHooks, JobRunner
from asyncjobs.runtime import current_queue
from asyncjobs.worker_limits import HEALTH_MARK, WorkerLimits

logger = logging.getLogger(__name__)
# at shutdown, how long Redis calls keep reconnecting (re-queueing cancelled jobs, unregistering)
# before the worker exits without them; a job it could not re-queue re-runs when its lease lapses
CLOSE_REDIS_WAIT_S = 2.0

# the loop's shortest wait while every slot is busy: a finishing job wakes it anyway, so
# ``poll_delay=0`` must not turn that wait into a busy loop
BUSY_WAIT_MIN_S = 0.05


class Worker(ArqWorker):
    """arq's Worker with asyncjobs' engine. Extra parameters:

    :param queues: queue names in priority order (default: the one ``queue_name`` stands for)
    :param lease: seconds a claim lasts unless renewed; a killed worker's job re-runs after it
    :param poll_delay: the fallback poll, for jobs enqueued without a wake-up
    """

    def __init__(self, *args: Any, queues: list[str] | None = None, lease: float = 5.0, **kwargs: Any) -> None:
        self.counters = JobCounters()  # before arq's __init__, which zeroes its counters through it
        self._signals = 0  # SIGTERM/SIGINT received (arq's __init__ may install the handlers)
        self._drain: asyncio.Task[None] | None = None
        super().__init__(*args, **kwargs)
        self.queue_names = list(queues or [keys.queue_name_of(self.queue_name)])
        self.queue_keys = [keys.queue(q) for q in self.queue_names]
        self.queue_name = self.queue_keys[0]
        #: the hash tags of this worker's queues (``[""]``: untagged; see asyncjobs.keys)
        self.tags = list(dict.fromkeys(keys.tag_of(k) for k in self.queue_keys))
        self.lease_s = float(lease)
        self.worker_id = new_worker_id()
        self.running: dict[str, str] = {}  # job id -> queue key
        self._wake = asyncio.Event()
        self._abort_check_due = 0.0  # loop time of the next read of arq's abort set
        self._background: list[asyncio.Task[Any]] = []
        self._hub: EventHub | None = None
        pool = PoolRef(lambda: self.pool)
        self.leases = LeaseKeeper(self.lease_s)  # renews running jobs' leases from a thread
        self.limits = WorkerLimits(self)  # the limits of this worker's functions
        self.claimer = Claimer(pool, self.queue_keys, self.lease_s, self.worker_id)
        self.finisher = Finisher(pool, release=self.leases.releaser)
        self.runner = JobRunner(
            functions=self.functions,
            hooks=JobHooks(self.on_job_start, self.on_job_end, self.after_job_end),
            defaults=JobDefaults(
                timeout_s=self.job_timeout_s,
                max_tries=self.max_tries,
                keep_result_s=self.keep_result_s,
                keep_result_forever=self.keep_result_forever,
                retry_jobs=self.retry_jobs,
                allow_abort_jobs=self.allow_abort_jobs,
                serializer=self.job_serializer,
                deserializer=self.job_deserializer,
            ),
            finisher=self.finisher,
            counters=self.counters,
            tasks=self.job_tasks,
            aborting=self.aborting_tasks,
            ctx=self.ctx,
            redis=pool,
        )
        self.housekeeper = Housekeeper(
            self.worker_id,
            pool,
            self._describe,
            interval=max(0.2, self.lease_s / 3),
            also=self.limits.check_plain_arq,
            tags=self.tags,
        )

    # arq's counters (its health check line and its tests read them) are the runner's
    @property
    def jobs_complete(self) -> int:
        return self.counters.complete

    @jobs_complete.setter
    def jobs_complete(self, n: int) -> None:
        self.counters.complete = n

    @property
    def jobs_failed(self) -> int:
        return self.counters.failed

    @jobs_failed.setter
    def jobs_failed(self, n: int) -> None:
        self.counters.failed = n

    @property
    def jobs_retried(self) -> int:
        return self.counters.retried

    @jobs_retried.setter
    def jobs_retried(self, n: int) -> None:
        self.counters.retried = n

    def _describe(self) -> dict[str, Any]:
        """What the worker registry shows of this worker."""
        return {
            "queues": self.queue_names,
            "concurrency": self.max_jobs,
            "running": len(self.running),
            "jobs_complete": self.counters.complete,
            "jobs_failed": self.counters.failed,
            "jobs_retried": self.counters.retried,
        }

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
                self.redis_settings,
                job_serializer=self.job_serializer,  # the worker's own codec (arq's default: pickle)
                job_deserializer=self.job_deserializer,
                default_queue_name=self.queue_name,
                expires_extra_ms=self.expires_extra_ms,
            )
        logger.info(
            "worker %s: queues %s, concurrency %d, %d functions",
            self.worker_id,
            ",".join(self.queue_names),
            self.max_jobs,
            len(self.functions),
        )
        if is_cluster(self.pool):
            check_tagged(self.queue_names)
        self.ctx["redis"] = self.pool
        if self.on_startup:
            await self.on_startup(self.ctx)
        self.claimer.use_limits(self.limits.table)  # known once on_startup has set up the runtime
        await self.limits.start()
        self.leases.start(self.pool, self.worker_id)
        self._hub = hub = EventHub(self.pool)
        loop = asyncio.get_running_loop()
        for q in self.queue_names:
            self._background.append(loop.create_task(self._listen(hub, keys.wake(q), abort=False)))
        if self.allow_abort_jobs:
            self._background.append(loop.create_task(self._listen(hub, keys.ABORT_CHANNEL, abort=True)))
        self._background.append(loop.create_task(self.housekeeper.run()))
        await self._loop()

    async def _loop(self) -> None:
        retrying = Retrying(logger, "worker {wid}: Redis unavailable ({reason}); retrying", wid=self.worker_id)
        while True:
            self._wake.clear()
            try:
                claimed, earliest = await self._claim_and_start() if self.allow_pick_jobs else (0, None)
                self._reap()
                await self._check_arq_aborts()
                await self.heart_beat()
            except UNAVAILABLE as e:  # (a cluster node away; one Redis reconnects inside its calls)
                await retrying.pause(e)
                continue
            retrying.succeeded()
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
        claimed, earliest = await self.claimer.claim(room)
        for c in claimed:
            self._start(c)
        # jobs set aside by flow control count as progress: claim again at once
        return len(claimed) + self.claimer.moved, earliest

    def _start(self, c: Claimed) -> None:
        self.job_counter += 1
        self.running[c.job_id] = c.queue_key
        token = current_queue.set(keys.queue_name_of(c.queue_key))
        try:
            task = asyncio.get_running_loop().create_task(self._run(c))
        finally:
            current_queue.reset(token)
        task.add_done_callback(lambda t: self._job_done(c.job_id, t))
        self.tasks[c.job_id] = task
        self.leases.add(c.job_id, c.queue_key, task)

    async def _run(self, c: Claimed) -> None:
        try:
            await self.runner.run(c)
        except UNAVAILABLE as e:  # its end was not written: its lease lapses, and it runs again
            logger.warning("job %s: Redis unavailable (%s); it runs again once its lease lapses", c.job_id, e)

    def _job_done(self, job_id: str, task: asyncio.Task[Any]) -> None:
        self.job_counter -= 1
        self.running.pop(job_id, None)
        self.leases.discard(job_id, task)  # a job task that ended without finishing: let its lease lapse
        self._wake.set()

    def _reap(self) -> None:
        for job_id, t in list(self.tasks.items()):
            if t.done():
                del self.tasks[job_id]
                t.result()

    async def _check_arq_aborts(self) -> None:
        """Cancel running jobs named in ``arq:abort`` (what arq's ``Job.abort()`` writes: it
        publishes nothing), as arq's worker does each poll: here at most once per poll interval,
        and only while jobs run (a job aborted before it starts is caught by the claim)."""
        if not (self.allow_abort_jobs and self.job_tasks):
            return
        now = self.loop.time()
        if now < self._abort_check_due:
            return
        # (0.9: a timed wait may end a clock tick early; that must not skip a whole interval)
        self._abort_check_due = now + 0.9 * max(self.poll_delay_s, BUSY_WAIT_MIN_S)
        await self._cancel_aborted_jobs()

    def _next_wake(self, earliest: int | None, claimed: int) -> float:
        wait = self.poll_delay_s
        room = self.job_counter < self.max_jobs
        if earliest is not None and room:
            wait = min(wait, max(0.0, (earliest - timestamp_ms()) / 1000))
            if wait == 0.0 and not claimed:
                wait = self.poll_delay_s  # due jobs held by plain arq workers: do not spin
        for cj in self.cron_jobs:
            if cj.next_run is not None:
                wait = min(wait, max(0.0, (cj.next_run.timestamp() - 1.0) - timestamp_ms() / 1000))
        # no room: a finishing job sets the wake-up, so poll_delay=0 must not spin here
        return max(wait, 0.0 if room else BUSY_WAIT_MIN_S)

    async def _sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)  # poll_delay=0: still let the running jobs run
            return
        # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel (shutdown) that
        # arrives as the wake-up fires
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()

    async def record_health(self) -> None:
        """arq's health line (``arq --check`` reads it), marked as written by this engine: a
        line without the mark was written by a plain arq worker (see :mod:`asyncjobs.worker_limits`)."""
        now = time.time()
        if now - self._last_health_check < self.health_check_interval:
            return
        self._last_health_check = now
        pending = sum(not t.done() for t in self.tasks.values())
        queued = await self.pool.zcard(self.queue_name)
        info = (
            f"{datetime.now():%b-%d %H:%M:%S} j_complete={self.jobs_complete} j_failed={self.jobs_failed} "
            f"j_retried={self.jobs_retried} j_ongoing={pending} queued={queued} {HEALTH_MARK}"
        )
        await self.pool.psetex(self.health_check_key, int((self.health_check_interval + 1) * 1000), info.encode())

    async def _burst_done(self) -> bool:
        if 0 <= self.max_burst_jobs <= self._jobs_started() or not self.tasks:
            if self.tasks:
                await asyncio.gather(*self.tasks.values())
            if 0 <= self.max_burst_jobs <= self._jobs_started():
                return True
            # as arq: done when the queues are empty, deferred jobs and retries included
            return sum([int(await self.pool.zcard(k)) for k in self.queue_keys]) == 0
        return False

    async def _cancel_aborted_jobs(self) -> None:
        """arq's check of its abort set, for each hash tag's copy of it (arq's own for an
        untagged worker)."""
        if self.tags == [""]:
            await super()._cancel_aborted_jobs()
            return
        for tag in self.tags:
            key = keys.tagged(keys.ARQ_ABORT, tag)
            aborted = {i.decode() for i in await self.pool.zrange(key, 0, -1)} & set(self.job_tasks)
            for job_id in aborted:
                self.job_tasks[job_id].cancel()
            if aborted:
                self.aborting_tasks.update(aborted)
                await self.pool.zrem(key, *aborted)

    async def _listen(self, hub: EventHub, channel: str, *, abort: bool) -> None:
        async with hub.subscribe(channel) as queue:
            while True:
                await queue.get()
                if abort:
                    await self._cancel_aborted_jobs()
                else:
                    self._wake.set()

    # --- finishing (arq's hooks, kept for code that calls them) -----------------------------
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
        await self.finisher.finish(
            job_id,
            self.running.get(job_id, self.queue_name),
            done=finish,
            result=result_data,
            result_px=0 if keep_result_forever else int((result_timeout_s or 0) * 1000),
            retry_score=timestamp_ms() + (incr_score or 0),
            keep_in_progress_ms=None if keep_in_progress is None else int(keep_in_progress * 1000),
        )

    async def finish_failed_job(self, job_id: str, result_data: bytes | None) -> None:
        info = decode_result(self.job_deserializer, result_data)
        await self.runner.finish_failed(job_id, self.running.get(job_id, self.queue_name), result_data, info)

    # --- shutdown ---------------------------------------------------------------------------
    # SIGTERM/SIGINT with a grace period (arq's ``job_completion_wait``, asyncjobs'
    # ``shutdown_grace``): stop claiming, let running jobs finish, then cancel the rest (re-queued
    # at their original score, as arq does: due at once, place and priority kept) and wake the
    # other workers. A second signal cancels and re-queues at once; a third exits without
    # waiting for Redis.
    def handle_sig_wait_for_completion(self, signum: signal.Signals) -> None:
        self._signals += 1
        sig = signal.Signals(signum)
        if self._signals == 1:
            self.allow_pick_jobs = False
            logger.info(
                "%s: draining %d running job(s) for up to %gs; send it again to stop now",
                sig.name,
                len(self.running),
                self._job_completion_wait,
            )
            self._drain = self.loop.create_task(self._drain_and_stop(sig, float(self._job_completion_wait)))
        elif self._signals == 2:
            logger.warning("%s again: cancelling and re-queueing %d running job(s) now", sig.name, len(self.running))
            self._drain = self.loop.create_task(self._drain_and_stop(sig, 0.0))
        else:
            logger.error("%s a third time: exiting without waiting", sig.name)
            os._exit(128 + int(sig))

    def handle_sig(self, signum: signal.Signals) -> None:
        if signum == signal.SIGUSR1 or not self._job_completion_wait:  # close(), or no grace configured
            self.allow_pick_jobs = False
            super().handle_sig(signum)
            return
        self.handle_sig_wait_for_completion(signum)

    async def _drain_and_stop(self, sig: signal.Signals, grace: float) -> None:
        pending = [t for t in self.tasks.values() if not t.done()]
        if pending and grace > 0:
            await asyncio.wait(pending, timeout=grace)
        pending = [t for t in self.tasks.values() if not t.done()]
        give_up_reconnecting(self.pool, CLOSE_REDIS_WAIT_S if pending else 0.0)  # never wait for ever
        for t in pending:
            t.cancel()
        if pending:
            await asyncio.wait(pending)
            with contextlib.suppress(RedisError, OSError):
                for q in self.queue_names:  # re-queued jobs are due now: wake idle workers
                    await self.pool.publish(keys.wake(q), b"0")
        logger.info("%s: stopped; %d job(s) cancelled and re-queued", sig.name, len(pending))
        if self.main_task is not None:
            self.main_task.cancel()
        if self.on_stop is not None:
            self.on_stop(sig)

    async def close(self) -> None:
        if self._pool is not None:  # Redis may be away: clean up what we can, then go
            busy = any(not t.done() for t in self.tasks.values())  # cancelled jobs still re-queueing
            give_up_reconnecting(self._pool, CLOSE_REDIS_WAIT_S if busy else 0.0)
        for t in self._background:
            t.cancel()
        if self._background:  # bounded: a listener that ignores its cancel must not hang shutdown
            _, stuck = await asyncio.wait(self._background, timeout=5)
            for t in stuck:
                logger.warning("background task %s did not stop within 5s", t.get_name())
        self._background.clear()
        if self._pool is not None:
            await self.housekeeper.unregister()
        if self._hub is not None:
            await self._hub.close()
            self._hub = None
        # arq's close(), with redis-py's non-deprecated aclose()
        if not self._handle_signals:
            self.handle_sig(signal.SIGUSR1)
        if not self._pool:
            return
        await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.leases.stop()
        with contextlib.suppress(RedisError, OSError):
            await self.pool.delete(self.health_check_key)
        if self.on_shutdown:
            await self.on_shutdown(self.ctx)
        await self.pool.aclose(close_connection_pool=True)
        self._pool = None
