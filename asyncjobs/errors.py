"""The asyncjobs error tree.

::

    AsyncJobsError
    ├── ConfigError            bad settings or options (names the key and the bad value)
    ├── BrokerUnavailable      Redis cannot be reached (names the URL, never its password)
    │   └── NotReplicated      a durable enqueue no replica confirmed in time
    ├── ClientClosed           a client used outside ``async with`` / after ``close()``
    ├── SerializationError     a payload that cannot be encoded or decoded
    ├── UnknownFunction        a job names a function nobody registered
    ├── InvalidArguments       args / kwargs that do not fit the function's signature
    ├── InvalidWorkflow        a workflow with a bad node, an unknown parent or a cycle
    ├── DuplicateJob           a job id that is already queued, running or has a result
    ├── JobNotFound            no job, running or finished, with that id
    ├── DeadLetterNotFound     no dead letter with that id
    ├── WorkerStartFailed      supervised worker processes kept failing at start
    └── JobFailed              a job ended without a result (carries the structured error)
        └── JobAborted         ...because it was aborted
"""

from __future__ import annotations

from typing import Any


def truncate(value: object, limit: int = 80) -> str:
    """``repr``-like text of a user value, cut to ``limit`` characters for logs and messages."""
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class AsyncJobsError(Exception):
    """Root of every error asyncjobs raises on purpose."""


class ConfigError(AsyncJobsError):
    """A setting or option has a bad value; the message names it and says the fix."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class BrokerUnavailable(AsyncJobsError):
    """Redis could not be reached at ``url`` (password masked)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot reach Redis at {url}: {reason.rstrip('.')}. Is redis-server running there? "
            "Set REDIS_URL, or use REDIS_URL=memory:// for the embedded in-memory broker."
        )
        self.url = url
        self.reason = reason


class NotReplicated(BrokerUnavailable):
    """A durable enqueue (``connect(durable=...)``) that no replica confirmed within
    ``timeout`` seconds: the job is on the primary only, and a failover now would lose it."""

    def __init__(self, url: str, timeout: float, job_ids: list[str]) -> None:
        AsyncJobsError.__init__(
            self,
            f"no replica of Redis at {url} confirmed {len(job_ids)} enqueued job(s) within {timeout:g}s: "
            "they are on the primary only. Check the replicas (INFO replication), or raise the timeout",
        )
        self.url, self.reason = url, "not replicated"
        self.timeout = timeout
        self.job_ids = job_ids


class ClientClosed(AsyncJobsError):
    """The client is not open: use ``async with asyncjobs.connect(...) as client``."""


class SerializationError(AsyncJobsError):
    """A payload could not be encoded or decoded."""


class UnknownFunction(AsyncJobsError):
    """No registered job function has this name."""

    def __init__(self, function: str, known: list[str] | None = None) -> None:
        hint = f"; registered: {', '.join(sorted(known))}" if known else ""
        super().__init__(f"unknown job function {truncate(function)!s}{hint}")
        self.function = function


class InvalidArguments(AsyncJobsError):
    """Arguments that do not fit the job function; ``errors`` lists each problem."""

    def __init__(self, function: str, errors: list[dict[str, Any]]) -> None:
        first = errors[0] if errors else {"loc": [], "msg": "invalid arguments"}
        where = ".".join(str(p) for p in first.get("loc", [])) or "arguments"
        super().__init__(f"invalid arguments for {function}: {where}: {first.get('msg')}")
        self.function = function
        self.errors = errors


class InvalidWorkflow(AsyncJobsError):
    """A workflow that cannot be created: ``node`` names the node (job id) at fault and
    ``errors`` lists argument problems as :class:`InvalidArguments` does."""

    def __init__(self, message: str, *, node: str | None = None, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.node = node
        self.errors = errors or []


class DuplicateJob(AsyncJobsError):
    """A job with this id is already queued, running, or has a kept result."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} already exists")
        self.job_id = job_id


class JobNotFound(AsyncJobsError):
    """No job with this id is queued, running, or has a kept result."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"job {job_id} not found (never enqueued, or its result expired)")
        self.job_id = job_id


class DeadLetterNotFound(AsyncJobsError):
    """No dead-lettered job with this id."""

    def __init__(self, job_id: str) -> None:
        super().__init__(f"no dead-lettered job {job_id}")
        self.job_id = job_id


class PathNotAllowed(AsyncJobsError):
    """A job was given a path that is not a readable file inside its data directory.

    One error for every case (missing, outside the directory, a symlink leading out, not a
    regular file), naming only the path the caller gave: it reveals nothing beyond the
    directory, not even whether a file exists there."""

    def __init__(self, path: object, reason: str | None = None) -> None:
        super().__init__(
            reason
            or f"no readable file {truncate(path)!r} in the data directory: give a path relative to it (or inside it)"
        )
        self.path = truncate(path)


class WorkerStartFailed(AsyncJobsError):
    """``asyncjobs worker --processes N`` gave up: a worker process failed to start ``failures``
    times in a row; ``error`` is its last error line, ``exit_code`` the command's exit code."""

    def __init__(self, failures: int, error: str, *, exit_code: int = 1) -> None:
        super().__init__(f"a worker process failed to start {failures} times in a row; giving up: {error}")
        self.failures = failures
        self.error = error
        self.exit_code = exit_code


class JobFailed(AsyncJobsError):
    """A job ended in failure. ``error_type``, ``error_message`` and ``traceback`` describe
    the exception raised inside the job (in the worker process)."""

    def __init__(
        self,
        job_id: str,
        function: str,
        error_type: str,
        error_message: str,
        traceback: str | None = None,
    ) -> None:
        super().__init__(f"job {job_id} ({function}) failed: {error_type}: {truncate(error_message, 200)}")
        self.job_id = job_id
        self.function = function
        self.error_type = error_type
        self.error_message = error_message
        self.traceback = traceback


class JobAborted(JobFailed):
    """The job was aborted before it could finish."""
