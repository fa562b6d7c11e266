"""What a running job sees: :class:`JobContext`, a dict (as arq passes it) with typed accessors."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arq.connections import ArqRedis

logger = logging.getLogger("asyncjobs.job")

# ctx entries asyncjobs itself puts there (resources from on_startup sit beside them)
# (how the run goes is on ``ctx[lifecycle.CTX_RUN]``, a :class:`~asyncjobs.lifecycle.JobRun`)
CTX_RUNTIME = "asyncjobs_runtime"


class JobContext(dict[str, Any]):
    """The first argument of every job function.

    It is arq's ``ctx`` dict (``ctx["redis"]``, ``ctx["job_id"]``, resources set by
    ``on_startup`` such as ``ctx["http"]``), plus attributes: ``job_id``, ``job_try``,
    ``enqueue_time``, ``function``, ``redis``, ``log`` and ``await ctx.progress(...)``.
    Resources are also reachable as attributes (``ctx.http``).

    What a job stores on it (``ctx["rows"] = n``, ``ctx.rows = n``) is written through to the
    ctx dict it was built from, arq's per-job ``ctx``, so the worker's ``on_job_end`` and
    ``after_job_end`` hooks see it.
    """

    def __init__(self, ctx: dict[str, Any] | None = None, /) -> None:
        super().__init__(ctx or {})
        object.__setattr__(self, "_origin", ctx)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, value)
        if self._origin is not None:
            self._origin[key] = value

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        if self._origin is not None:
            self._origin.pop(key, None)

    def setdefault(self, key: str, default: Any = None, /) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def pop(self, key: str, /, *default: Any) -> Any:
        value = super().pop(key, *default)
        if self._origin is not None:
            self._origin.pop(key, None)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        if hasattr(type(self), name):  # job_id, progress, ...: not resources
            raise AttributeError(f"job context attribute {name!r} is read-only")
        self[name] = value

    @property
    def job_id(self) -> str:
        return str(self["job_id"])

    @property
    def job_try(self) -> int:
        return int(self.get("job_try", 1))

    @property
    def enqueue_time(self) -> datetime | None:
        return self.get("enqueue_time")

    @property
    def function(self) -> str:
        return str(self.get("asyncjobs_function", ""))

    @property
    def redis(self) -> ArqRedis:
        return self["redis"]  # type: ignore[no-any-return]

    @property
    def log(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(logger, {"job_id": self.get("job_id")})

    def __getattr__(self, name: str) -> Any:
        if name == "_origin":  # a copy made without __init__ (copy.copy, pickle)
            return None
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"job context has no resource {name!r}; set ctx[{name!r}] in on_startup") from None

    async def progress(self, percent: float, message: str | None = None, **meta: Any) -> None:
        """Record progress (0–100) with an optional message and JSON-able details; stored on
        the job and published to everyone following it."""
        runtime = self.get(CTX_RUNTIME)
        if runtime is None:  # called outside a worker (a unit test calling the function directly)
            return
        await runtime.progress(self, percent, message, meta)
