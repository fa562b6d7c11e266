"""The job runtime: what happens around every job, through arq's extension points only
(wrapped functions, ``on_startup``, ``after_job_end``, ``ctx``), so a plain
``arq settings.WorkerSettings`` worker behaves exactly like ``asyncjobs worker``.

Per job: a ``started`` event and state; progress stored and published; a per-function
timeout; retries with the function's backoff (as arq ``Retry``); a final failure's dead
letter. How the run went is kept on its :class:`~asyncjobs.lifecycle.JobRun` (``ctx``'s one
lifecycle slot): the engine writes the end from it in its finish; under a plain arq worker,
``after_job_end`` writes it, once arq has stored the result, through the lifecycle's end
script (event, count, done message, dead letter, hooks: :mod:`asyncjobs.lifecycle`).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import orjson
from arq.typing import WorkerCoroutine
from arq.utils import timestamp_ms
from arq.worker import Function, Retry
from arq.worker import func as arq_func
from redis.exceptions import NoScriptError

from asyncjobs import connections, deadletter, events, keys, scripts
from asyncjobs.canvas import INPUTS_KWARG
from asyncjobs.context import CTX_RUNTIME, JobContext
from asyncjobs.errors import ConfigError
from asyncjobs.executors import ProcessPool, run_in_thread
from asyncjobs.lifecycle import CTX_RUN, JobEnd, JobEvent, JobRun, Outcome, job_run, plain_end_args, started_state
from asyncjobs.metrics import WorkerMetrics
from asyncjobs.registry import JobFunction, Registry
from asyncjobs.workflow_inputs import with_inputs

logger = logging.getLogger(__name__)

Hook = Callable[[dict[str, Any]], Awaitable[Any]]

#: the queue of the job being run; set by the engine, defaulted to the worker's queue
current_queue: contextvars.ContextVar[str] = contextvars.ContextVar("asyncjobs_queue")

# arq's own timeout is a safety net behind ours, which is the one that retries
ARQ_TIMEOUT_GRACE_S = 5.0
# tries a job may lose to dying workers (lease lapses) beyond its own retries, before it is
# dead-lettered: a job that kills its worker every time must not loop forever
CRASH_RERUNS = 2
DEFAULT_TIMEOUT_S = 300.0


class JobTimeout(TimeoutError):
    """A try ran longer than its function's ``timeout``."""


class Runtime:
    """Builds arq functions from a :class:`Registry` and provides the lifecycle hooks."""

    def __init__(
        self,
        registry: Registry,
        *,
        default_queue: str = keys.DEFAULT_QUEUE,
        default_timeout: float = DEFAULT_TIMEOUT_S,
        on_startup: Hook | None = None,
        on_shutdown: Hook | None = None,
        after_job_end: Hook | None = None,
        metrics_port: int | None = None,
        redis_url: str = "",
    ) -> None:
        self.registry = registry
        self.redis_url = redis_url
        self.metrics = WorkerMetrics()
        self.metrics_port = metrics_port
        self.default_queue = default_queue
        self.default_timeout = default_timeout
        self.user_startup = on_startup
        self.user_shutdown = on_shutdown
        self.user_after_job_end = after_job_end
        self.worker_label = f"{socket.gethostname()}:{os.getpid()}"
        self._process_pool: ProcessPool | None = None
        self._index_script: Any = None
        self._end_script: Any = None

    # --- arq extension points -------------------------------------------------------------
    def arq_functions(self) -> list[Function]:
        return [self._arq_function(f) for f in self.registry]

    def _arq_function(self, jf: JobFunction[Any, Any]) -> Function:
        timeout = jf.opts.timeout or self.default_timeout
        run = self._wrap(jf, timeout)
        return arq_func(
            cast(WorkerCoroutine, run),
            name=jf.name,
            timeout=timeout + ARQ_TIMEOUT_GRACE_S,
            keep_result=jf.opts.keep_result,
            max_tries=jf.opts.retries + 1 + CRASH_RERUNS,
        )

    async def on_startup(self, ctx: dict[str, Any]) -> None:
        ctx[CTX_RUNTIME] = self
        await connections.follow_failovers(ctx["redis"], self.redis_url)
        if self.metrics_port is not None:
            try:
                self.metrics.serve(self.metrics_port)
            except OSError as e:
                raise ConfigError(f"cannot serve metrics on port {self.metrics_port}: {e}", key="metrics_port") from e
        if self.user_startup is not None:
            await self.user_startup(ctx)

    async def on_shutdown(self, ctx: dict[str, Any]) -> None:
        if self.user_shutdown is not None:
            await self.user_shutdown(ctx)
        if self._process_pool is not None:
            self._process_pool.shutdown()
            self._process_pool = None
        self.metrics.stop()

    async def after_job_end(self, ctx: dict[str, Any]) -> None:
        """Write the end of a run a plain arq worker ended, once arq has stored the result
        (the engine writes it in its finish), then run the user's ``after_job_end``."""
        await self._write_end(ctx)
        if self.user_after_job_end is not None:
            await self.user_after_job_end(ctx)

    async def _write_end(self, ctx: dict[str, Any]) -> None:
        run = ctx.get(CTX_RUN)
        if not isinstance(run, JobRun) or run.engine:
            return
        job_id = ctx["job_id"]
        redis = ctx["redis"]
        outcome = run.outcome
        if run.cancelled:  # aborted (a result was written) or shut down (re-queued)
            outcome = Outcome.ABORTED if await redis.exists(keys.result(job_id)) else Outcome.REQUEUED
        if outcome is None:
            return
        queue_key = keys.queue(current_queue.get(self.default_queue))
        end = JobEnd(job_id, queue_key, outcome, ctx.get("asyncjobs_function"), run.dead_letter)
        if self._end_script is None:
            self._end_script = redis.register_script(scripts.END_PLAIN)
        await self._end_script(keys=[queue_key], args=plain_end_args(end, run))

    # --- per job ---------------------------------------------------------------------------
    def _wrap(self, jf: JobFunction[Any, Any], timeout: float) -> Callable[..., Awaitable[Any]]:
        runtime = self
        # parameters with rich annotations (models, datetimes, ...) arrive encoded: decode them
        decode = jf.arguments.decode if jf.arguments.adapters else None

        async def run(ctx: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            ctx["asyncjobs_function"] = jf.name
            ctx.setdefault(CTX_RUNTIME, runtime)
            run_state = job_run(ctx)
            jc = JobContext(ctx)
            if not run_state.engine:  # asyncjobs.Worker's claim already did this
                await runtime._started(jc, run_state)
            deadline = asyncio.timeout(timeout)
            queue = current_queue.get(runtime.default_queue)
            started = time.perf_counter()
            try:
                try:
                    async with deadline:
                        call_args: Sequence[Any] = args
                        call_kwargs = kwargs
                        if INPUTS_KWARG in kwargs:  # a workflow node: its parents' results come first
                            call_args, call_kwargs = await with_inputs(ctx["redis"], jc.job_id, args, kwargs)
                        if decode is not None:
                            call_args, call_kwargs = decode(call_args, call_kwargs)
                        result = await runtime._call(jf, jc, call_args, call_kwargs)
                except TimeoutError:
                    if not deadline.expired():
                        raise
                    raise JobTimeout(f"{jf.name} exceeded its {timeout:g}s timeout") from None
            except Retry as e:
                run_state.outcome = Outcome.RETRYING
                runtime.metrics.retried(jf.name, queue)
                await runtime._publish(jc, events.RETRYING, delay=(e.defer_score or 0) / 1000, error=None)
                raise
            except asyncio.CancelledError:
                run_state.cancelled = True
                raise
            except Exception as e:
                await runtime._failed(jc, run_state, jf, e, args, kwargs)
                raise
            else:
                run_state.outcome = Outcome.COMPLETE
                return result
            finally:  # in-process only: a histogram observation costs no round trip
                elapsed = time.perf_counter() - started
                runtime.metrics.observe(jf.name, queue, run_state.metrics_outcome, elapsed)

        run.__name__ = run.__qualname__ = jf.name
        return run

    async def _call(self, jf: JobFunction[Any, Any], ctx: JobContext, args: Any, kwargs: Any) -> Any:
        if jf.opts.executor is None:
            return await jf.func(ctx, *args, **kwargs)
        if jf.opts.executor == "thread":
            return await run_in_thread(jf.func, args, kwargs)
        if self._process_pool is None:
            self._process_pool = ProcessPool()
        return await self._process_pool.run((jf.func.__module__, jf.func.__qualname__), args, kwargs)

    async def _started(self, ctx: JobContext, run: JobRun) -> None:
        job_id = ctx.job_id
        state = started_state(timestamp_ms(), ctx.job_try, self.worker_label, ctx.function)
        run.started_ms = state["started_ms"]
        if self._index_script is None:
            self._index_script = ctx.redis.register_script(scripts.INDEX_ONE)
        index = self._index_script
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.state(job_id), mapping=state)
            pipe.expire(keys.state(job_id), keys.STATE_TTL_S)
            pipe.execute_command("PUBLISH", keys.events(job_id), JobEvent.started(job_id, state).encode())
            # EVALSHA itself, not index(client=pipe): a Script in a pipeline costs a SCRIPT
            # EXISTS round trip on every execute
            queue_key = keys.queue(current_queue.get(self.default_queue))  # KEYS[1]: its hash tag
            pipe.evalsha(index.sha, 1, queue_key, job_id)
            try:
                await pipe.execute()
            except NoScriptError:  # Redis restarted or flushed its scripts: the rest has run
                await index(keys=[queue_key], args=[job_id])

    async def _publish(self, ctx: JobContext, event: str, **data: Any) -> None:
        await ctx.redis.publish(keys.events(ctx.job_id), events.encode(ctx.job_id, event, **data))

    async def _failed(
        self, jc: JobContext, run: JobRun, jf: JobFunction[Any, Any], exc: Exception, args: Any, kwargs: Any
    ) -> None:
        """A try failed: raise ``Retry`` with the function's backoff, or, after the last try,
        keep the run's dead letter on ``run`` (the end call writes it)."""
        tries = jc.job_try
        error = {"type": type(exc).__name__, "message": str(exc)[:500]}
        refused = jf.opts.not_retried(exc) if tries <= jf.opts.retries else None
        if tries <= jf.opts.retries and refused is None:
            delay = jf.opts.backoff.delay(tries)
            run.outcome = Outcome.RETRYING
            self.metrics.retried(jf.name, current_queue.get(self.default_queue))
            logger.info(
                "job %s (%s) try %d failed (%s); retrying in %.2fs", jc.job_id, jf.name, tries, error["type"], delay
            )
            await self._publish(jc, events.RETRYING, delay=delay, error=error, **{"try": tries})
            raise Retry(defer=delay) from exc
        run.outcome = Outcome.FAILED
        self.metrics.dead_letter(jf.name, current_queue.get(self.default_queue))
        run.dead_letter = deadletter.encode_entry(
            job_id=jc.job_id,
            function=jf.name,
            args=args,
            kwargs=kwargs,
            queue=current_queue.get(self.default_queue),
            tries=tries,
            reason=refused or f"failed after {tries} tr{'y' if tries == 1 else 'ies'}",
            error=exc,
        )
        if not run.engine:
            # a plain arq worker writes the failed result itself before after_job_end runs:
            # the dead letter goes first, so a crash in between cannot leave a failure without
            # its record (the end call writes the same entry again)
            await deadletter.store(jc.redis, jc.job_id, run.dead_letter)

    async def progress(self, ctx: JobContext, percent: float, message: str | None, meta: dict[str, Any]) -> None:
        pct = max(0.0, min(100.0, float(percent)))
        fields: dict[str, Any] = {"progress": pct, "message": message or "", "meta": orjson.dumps(meta, default=str)}
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.hset(keys.state(ctx.job_id), mapping=fields)
            pipe.execute_command(  # PUBLISH (a cluster pipeline has no publish method)
                "PUBLISH",
                keys.events(ctx.job_id),
                events.encode(ctx.job_id, events.PROGRESS, progress=pct, message=message, meta=meta),
            )
            await pipe.execute()
