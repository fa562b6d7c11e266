"""arq's record format: the job record (``arq:job:<id>``) and the result record
(``arq:result:<id>``) decoded with the broker's serializer into a :class:`JobRecord`, and the
result record of a job aborted before it started (the client writes it; workers write the rest).

arq writes a job record as ``{"t": tries, "f": function, "a": args, "k": kwargs, "et":
enqueue ms}`` (asyncjobs leaves ``"t"`` out while it is ``None`` and adds ``"q"``, the queue's
name, for a queue other than the default: without it the reader finds the queue the job is in)
and a result record as the same
fields plus ``"s"`` (success), ``"r"`` (the result or the exception), ``"st"``/``"ft"``
(start and finish ms) and ``"q"`` (the queue's *key*). A record that cannot be decoded is
shown, never raised: the job is then ``<undecodable>`` or failed with a ``SerializationError``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from asyncjobs import keys
from asyncjobs.records import JobRecord, JobStatus
from asyncjobs.serialization import RemoteError, deserialize, serialize

Deserializer = Callable[[bytes], Any]
Serializer = Callable[[Any], bytes]

UNDECODABLE_FUNCTION = "<undecodable>"
UNDECODABLE_RESULT = {"type": "SerializationError", "message": "undecodable result", "traceback": None}


def fill_from_job(rec: JobRecord, raw: bytes, deserializer: Deserializer | None = None) -> None:
    """Function, arguments, enqueue time and queue from arq's job record."""
    try:
        d = (deserializer or deserialize)(raw)
    except Exception:
        rec.function = UNDECODABLE_FUNCTION
        return
    rec.function, rec.args, rec.kwargs = d.get("f"), list(d.get("a") or []), dict(d.get("k") or {})
    rec.enqueue_ms, rec.queue = d.get("et"), d.get("q")


def fill_from_result(rec: JobRecord, raw: bytes, deserializer: Deserializer | None = None) -> JobStatus:
    """Everything arq's result record holds; returns how the job ended (complete, failed or
    aborted: an error of type ``CancelledError``)."""
    try:
        d = (deserializer or deserialize)(raw)
    except Exception:
        rec.error = dict(UNDECODABLE_RESULT)
        return JobStatus.FAILED
    rec.function, rec.args, rec.kwargs = d.get("f"), list(d.get("a") or []), dict(d.get("k") or {})
    rec.tries, rec.enqueue_ms, rec.start_ms, rec.finish_ms = d.get("t") or 0, d.get("et"), d.get("st"), d.get("ft")
    rec.queue = keys.queue_name_of(d["q"]) if isinstance(d.get("q"), str) else None
    r = d.get("r")
    if d.get("s"):
        rec.result = r
        return JobStatus.COMPLETE
    if isinstance(r, RemoteError):
        rec.error = r.as_dict()
    else:
        rec.error = {"type": "JobFailed", "message": str(r), "traceback": None}
    return JobStatus.ABORTED if rec.error["type"] == "CancelledError" else JobStatus.FAILED


def aborted_result(rec: JobRecord, queue_key: str, now_ms: int, serializer: Serializer | None = None) -> bytes:
    """arq's result record for a job aborted before it started: failed with a
    ``CancelledError``, as arq records an abort (read back as :data:`JobStatus.ABORTED`)."""
    return (serializer or serialize)(
        {
            "t": rec.tries,
            "f": rec.function or "<unknown>",
            "a": rec.args,
            "k": rec.kwargs,
            "et": rec.enqueue_ms or now_ms,
            "s": False,
            "r": asyncio.CancelledError("aborted before start"),
            "st": now_ms,
            "ft": now_ms,
            "q": queue_key,
            "id": rec.job_id,
        }
    )
