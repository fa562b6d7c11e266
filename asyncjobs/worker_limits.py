"""A worker's side of flow control: the limits of its functions (sent with every claim, and
published in ``asyncjobs:limits`` for the API), and the warning when plain arq workers, which
know nothing of the limits, serve a queue with limited functions."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson
from redis.exceptions import RedisError

from asyncjobs import keys
from asyncjobs.context import CTX_RUNTIME
from asyncjobs.limits import describe, limits_table

if TYPE_CHECKING:
    from asyncjobs.registry import JobFunction
    from asyncjobs.worker import Worker

logger = logging.getLogger(__name__)

#: the plain-arq check runs at most this often
ARQ_CHECK_S = 60.0
#: ends the arq health line an asyncjobs worker writes (``<queue>:health-check``): a line
#: without it was written by a plain arq worker
HEALTH_MARK = "engine=asyncjobs"


class WorkerLimits:
    """The limits of one worker's functions."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker
        self._warned: frozenset[str] = frozenset()
        self._checked_at = float("-inf")

    @property
    def functions(self) -> list[JobFunction[Any, Any]]:
        runtime = self.worker.ctx.get(CTX_RUNTIME) if self.worker.ctx else None
        return list(runtime.registry) if runtime is not None else []

    @property
    def limited(self) -> list[JobFunction[Any, Any]]:
        return [f for f in self.functions if f.opts.rate_limit is not None or f.opts.max_concurrency is not None]

    @property
    def table(self) -> str:
        return limits_table(self.functions)

    def limited_queues(self) -> set[str]:
        """Queues where this worker may find limited jobs: the ones it serves and the limited
        functions' own queues."""
        limited = self.limited
        if not limited:
            return set()
        return set(self.worker.queue_names) | {f.opts.queue for f in limited if f.opts.queue}

    async def start(self) -> None:
        """Publish the limits (for ``/api/limits``) and say if Redis cannot enforce them."""
        limited = self.limited
        if not limited:
            return
        async with self.worker.pool.pipeline(transaction=False) as pipe:
            self._publish(pipe, limited)
            pipe.execute_command("EVAL", "return type(cmsgpack)", 0)  # (a cluster pipeline has no eval)
            *_, kind = await pipe.execute()
        names = ", ".join(f.name for f in limited)
        logger.info("flow control: limits on %s", names)
        if kind != b"table" and kind != "table":
            logger.warning(
                "flow control: this Redis has no cmsgpack in Lua (the embedded memory:// broker?): the limits "
                "and pauses of %s are not enforced",
                names,
            )
        await self.check_plain_arq(force=True)

    @staticmethod
    def _publish(pipe: Any, limited: list[JobFunction[Any, Any]]) -> None:
        mapping = {f.name: orjson.dumps({**describe(f), "queue": f.opts.queue}) for f in limited}
        pipe.hset(keys.LIMITS, mapping=mapping)
        pipe.expire(keys.LIMITS, keys.LIMITS_TTL_S)

    async def check_plain_arq(self, *, force: bool = False) -> None:
        """Refresh the published limits, and warn (once per change) when plain arq workers
        serve a queue with limited functions: they run its jobs without the limits. A plain
        arq worker shows as a queue's arq health line without :data:`HEALTH_MARK` (it
        writes the line when it starts and every ``health_check_interval``; an asyncjobs
        worker marks the line of its first queue)."""
        now = self.worker.loop.time()
        if not force and now - self._checked_at < ARQ_CHECK_S:
            return
        self._checked_at = now
        queues = sorted(self.limited_queues())
        if not queues:
            return
        try:
            async with self.worker.pool.pipeline(transaction=False) as pipe:
                self._publish(pipe, self.limited)  # the limits stay listed while workers live
                for q in queues:  # one GET each: in cluster mode the queues live in several slots
                    pipe.get(keys.health_check(q))
                replies = await pipe.execute()
            lines = replies[-len(queues) :]
        except (RedisError, OSError):
            return
        plain = frozenset(q for q, line in zip(queues, lines, strict=True) if line and HEALTH_MARK.encode() not in line)
        if plain and plain != self._warned:
            logger.warning(
                "plain arq workers serve queue(s) %s, which hold limited functions (%s): they run those jobs "
                "without rate or concurrency limits or pauses; run only `asyncjobs worker` on these queues",
                ", ".join(sorted(plain)),
                ", ".join(f.name for f in self.limited),
            )
        self._warned = plain
