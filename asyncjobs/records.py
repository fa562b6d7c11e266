"""Plain data about jobs and queues, as the client, CLI and HTTP API report them."""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

from asyncjobs.errors import JobAborted, JobFailed


class JobStatus(enum.StrEnum):
    """Where a job is in its life."""

    WAITING = "waiting"  # a workflow node whose parents have not all ended
    DEFERRED = "deferred"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    COMPLETE = "complete"
    FAILED = "failed"
    ABORTED = "aborted"
    NOT_FOUND = "not_found"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.COMPLETE, JobStatus.FAILED, JobStatus.ABORTED)


@dataclass
class JobRecord:
    """Everything known about one job. Times are epoch milliseconds. ``priority`` is known
    while the job waits in its queue (0 for a deferred job), else ``None``."""

    job_id: str
    status: JobStatus
    function: str | None = None
    args: list[Any] = field(default_factory=list)
    kwargs: dict[str, Any] = field(default_factory=dict)
    queue: str | None = None
    tries: int = 0
    enqueue_ms: int | None = None
    scheduled_ms: int | None = None
    priority: int | None = None
    start_ms: int | None = None
    finish_ms: int | None = None
    progress: float | None = None
    message: str | None = None
    meta: dict[str, Any] | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    #: why a queued job does not start: ``rate_limited``, ``at_concurrency`` or ``paused``
    waiting: str | None = None
    #: the id of the workflow this job is a node of (while the workflow's state is kept)
    workflow: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["status"] = self.status.value
        return d

    def outcome(self) -> Any:
        """The result of a complete job; for a failed (aborted) one, raise its error as
        :class:`JobFailed` (:class:`JobAborted`)."""
        if self.status is JobStatus.COMPLETE:
            return self.result
        err = self.error or {}
        cls = JobAborted if self.status is JobStatus.ABORTED else JobFailed
        raise cls(self.job_id, self.function or "?", err.get("type", "?"), err.get("message", ""), err.get("traceback"))


@dataclass
class QueueStats:
    """Counts for one queue. ``oldest_queued_ms``: when the longest-waiting due job was due.
    ``complete``, ``failed``, ``aborted``: jobs that ended so, counted as they end."""

    name: str
    queued: int
    deferred: int
    in_progress: int
    oldest_queued_ms: int | None
    complete: int = 0
    failed: int = 0
    aborted: int = 0
    #: jobs waiting on a rate or concurrency limit or a paused function (not in ``deferred``)
    waiting: int = 0
    #: the queue is paused: workers start none of its jobs
    paused: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
