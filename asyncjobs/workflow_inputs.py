"""What a workflow node receives when it starts: its parents' results, read from their result
keys by the runtime wrapper (under ``asyncjobs worker`` and plain ``arq`` alike) and passed as
its first argument, so nothing is re-encoded in Lua."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from asyncjobs import keys
from asyncjobs.canvas import INPUTS_KWARG
from asyncjobs.errors import InvalidWorkflow, JobAborted, JobFailed
from asyncjobs.serialization import RemoteError, deserialize


async def with_inputs(redis: Any, job_id: str, args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[Any, Any]:
    """``args``/``kwargs`` of a node that receives its parents' results: the results first
    (one value, or a list in the parents' order), the marker removed. A parent that failed
    is passed as its :class:`JobFailed` (policy ``pass_errors``) or left out
    (``ignore_failures``); a result that expired is an error."""
    kwargs = dict(kwargs)
    spec = kwargs.pop(INPUTS_KWARG)
    parents: list[str] = list(spec.get("from") or [])
    async with redis.pipeline(transaction=False) as pipe:
        pipe.mget([keys.result(p) for p in parents])
        pipe.hmget(keys.node(job_id), [f"e:{p}" for p in parents])
        raws, outcomes = await pipe.execute()
    values: list[Any] = []
    for p, raw, outcome in zip(parents, raws, outcomes, strict=True):
        value = _input(p, raw, outcome)
        if isinstance(value, JobFailed) and spec.get("policy") == "ignore":
            continue
        values.append(value)
    first = values if spec.get("list") else (values[0] if values else None)
    return (first, *args), kwargs


def _input(parent: str, raw: bytes | None, outcome: bytes | None) -> Any:
    if raw is None:
        if outcome in (b"cancelled", b"skipped"):
            return JobAborted(parent, "?", "Cancelled", f"job {parent} was {outcome.decode()}")
        raise InvalidWorkflow(
            f"the result of job {parent} is gone (expired, or its function keeps no result): "
            "give it a longer keep_result",
            node=parent,
        )
    d = deserialize(raw)
    if d.get("s"):
        return d.get("r")
    err = d.get("r")
    e = err.as_dict() if isinstance(err, RemoteError) else {"type": "JobFailed", "message": str(err)}
    cls = JobAborted if e["type"] == "CancelledError" else JobFailed
    return cls(parent, str(d.get("f") or "?"), e["type"], e.get("message", ""), e.get("traceback"))
