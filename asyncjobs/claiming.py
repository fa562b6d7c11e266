"""Claiming: one Lua call takes every due job the worker has room for, across its queues in
priority order, leases it, and returns what running it needs (see ``scripts.CLAIM``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arq.utils import timestamp_ms

from asyncjobs import keys, scripts
from asyncjobs.connections import UNAVAILABLE

#: jobs a claim reads past its room after a claim that parked some (see :meth:`Claimer.claim`)
SCAN_AFTER_MOVED = 500


@dataclass(slots=True)
class Claimed:
    """A job this worker now holds a lease on."""

    job_id: str
    queue_key: str
    score: int
    payload: bytes | None
    job_try: int
    aborted: bool


class Claimer:
    """Builds the CLAIM call for a worker's queues and decodes its answer."""

    def __init__(self, redis: Any, queue_keys: list[str], lease_s: float, worker_id: str, *, limits: str = "") -> None:
        self.queue_keys = queue_keys
        # one call per hash tag (the tagged layout, asyncjobs.keys: a call touches one slot),
        # in the order of each tag's first queue; an untagged worker makes one
        groups: dict[str, list[str]] = {}
        for k in queue_keys:
            groups.setdefault(keys.tag_of(k), []).append(k)
        self._groups = list(groups.values())
        self.lease_ms = int(lease_s * 1000)
        self._script = redis.register_script(scripts.CLAIM)
        # the worker's id: the in-progress marker's value (only this worker renews the lease),
        # and the ``worker`` of the job's state and started event; then the flow-control table
        # of this worker's functions (limits.limits_table)
        self._tail = [worker_id, limits]
        #: jobs the last claim set aside (parked or scheduled by flow control): progress, so
        #: the worker claims again at once instead of sleeping
        self.moved = 0

    def use_limits(self, table: str) -> None:
        """Send ``table`` (:func:`asyncjobs.limits.limits_table`) with every claim from now on."""
        self._tail[1] = table

    async def claim(self, room: int) -> tuple[list[Claimed], int | None]:
        """Up to ``room`` due jobs, and the earliest score left in any queue (None if empty)."""
        # after a claim that set jobs aside, read further: a backlog of limited jobs is parked
        # in a few large calls, and jobs behind it are reached sooner
        scan = room + (SCAN_AFTER_MOVED if self.moved else 100)
        jobs: list[Claimed] = []
        first: int | None = None
        moved = 0
        lost: BaseException | None = None
        for group in self._groups:
            if len(jobs) >= room:
                break
            argv = [timestamp_ms(), self.lease_ms, room - len(jobs), scan, *self._tail]
            try:
                found, earliest, n_moved = await self._script(keys=group, args=argv)
            except UNAVAILABLE as e:  # a cluster node away: the other tags' queues are served
                if len(self._groups) == 1:
                    raise
                lost = e
                continue
            moved += n_moved
            jobs += [
                Claimed(
                    found[i + 1].decode(),
                    group[int(found[i]) - 1],
                    int(float(found[i + 2])),
                    found[i + 3],
                    int(found[i + 4]),
                    bool(found[i + 5]),
                )
                for i in range(0, len(found), 6)
            ]
            if earliest and (first is None or int(float(earliest)) < first):
                first = int(float(earliest))
        self.moved = moved
        if lost is not None and not jobs and first is None:
            raise lost  # (every group failed, or the others are empty: the worker backs off)
        return jobs, first
