"""The job payload codec: msgpack, never pickle.

msgpack is compact, fast, language-neutral and cannot execute code on decode. Values it
carries: None, bool, int (64-bit), float, str, bytes, lists/tuples (decoded as lists),
dicts, ``datetime``/``date`` (as extension types), pydantic models (as their JSON dump) and
exceptions, which travel as a structured error (type, message, traceback) and decode to
:class:`RemoteError`. Anything else is refused with :class:`SerializationError` at enqueue
time, so a bad payload never reaches Redis.

``serialize``/``deserialize`` have arq's ``job_serializer``/``job_deserializer`` signatures,
so a plain arq worker or client configured with them speaks the same format.

Pickle is never the default. :func:`signed_pickle` is the opt-in for Python-only payloads:
HMAC-signed, and unsigned or forged payloads are refused before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import pickle
import threading
import traceback as tb
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import msgpack

from asyncjobs.errors import SerializationError, truncate

EXT_ERROR = 1
EXT_DATETIME = 2
EXT_DATE = 3


class RemoteError(Exception):
    """An exception raised inside a job, as it came back from the worker.

    Raised by arq's own ``Job.result()``; asyncjobs' client turns it into
    :class:`asyncjobs.errors.JobFailed`.
    """

    def __init__(self, type: str, message: str, traceback: str | None = None) -> None:
        super().__init__(f"{type}: {message}")
        self.type = type
        self.message = message
        self.traceback = traceback

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteError) and (self.type, self.message, self.traceback) == (
            other.type,
            other.message,
            other.traceback,
        )

    def __hash__(self) -> int:
        return hash((self.type, self.message))

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


def error_to_dict(exc: BaseException) -> dict[str, Any]:
    """Structured form of an exception: qualified type name, message, formatted traceback."""
    if isinstance(exc, RemoteError):
        return exc.as_dict()
    cls = type(exc)
    name = (
        cls.__qualname__
        if cls.__module__ in ("builtins", "asyncio.exceptions")
        else f"{cls.__module__}.{cls.__qualname__}"
    )
    trace = "".join(tb.format_exception(exc)) if exc.__traceback__ is not None else None
    return {"type": name, "message": str(exc), "traceback": trace}


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseException):
        return msgpack.ExtType(EXT_ERROR, msgpack.packb(error_to_dict(obj)))
    if isinstance(obj, datetime):
        return msgpack.ExtType(EXT_DATETIME, obj.isoformat().encode())
    if isinstance(obj, date):
        return msgpack.ExtType(EXT_DATE, obj.isoformat().encode())
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump(mode="json")
    raise TypeError(f"cannot serialize {type(obj).__name__} value {truncate(obj)}: use JSON-like values")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == EXT_ERROR:
        d = msgpack.unpackb(data, raw=False)
        return RemoteError(d["type"], d["message"], d.get("traceback"))
    if code == EXT_DATETIME:
        return datetime.fromisoformat(data.decode())
    if code == EXT_DATE:
        return date.fromisoformat(data.decode())
    return msgpack.ExtType(code, data)


_packers = threading.local()  # a Packer per thread: building one per call costs more than packing


def serialize(obj: Any) -> bytes:
    """Encode ``obj`` to bytes; raises :class:`SerializationError` naming the bad value."""
    packer = getattr(_packers, "packer", None)
    if packer is None:
        packer = _packers.packer = msgpack.Packer(default=_default, datetime=False, use_bin_type=True)
    try:
        return packer.pack(obj)  # type: ignore[no-any-return]
    except (TypeError, ValueError, OverflowError) as e:
        packer.reset()  # a failed pack may leave a partial buffer behind
        raise SerializationError(str(e)) from e


def deserialize(data: bytes) -> Any:
    """Decode bytes written by :func:`serialize`; raises :class:`SerializationError` when they are not.

    A job record (:func:`is_job_record`) is written without its try ``t`` while it is ``None``
    (3 bytes less per queued job); arq's reader requires the field, so it is filled in here."""
    try:
        obj = msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
    except Exception as e:  # msgpack raises several unrelated types for corrupt input
        raise SerializationError(f"undecodable payload ({len(data)} bytes): {e}") from e
    if type(obj) is dict and "t" not in obj and is_job_record(obj):
        obj["t"] = None
    return obj


JOB_RECORD_FIELDS = frozenset(("f", "a", "k", "et"))
#: the optional fields of a job record: try, queue name, per-key limit keys
JOB_RECORD_EXTRA = frozenset(("t", "q", "rk", "ck"))


def is_job_record(obj: dict[Any, Any]) -> bool:
    """Whether ``obj`` has the shape of arq's job record as asyncjobs writes it: ``f`` (the
    function, a string), ``a``, ``k``, ``et`` (an integer), and only the optional fields."""
    keys = obj.keys()
    return (
        JOB_RECORD_FIELDS <= keys <= JOB_RECORD_FIELDS | JOB_RECORD_EXTRA
        and isinstance(obj["f"], str)
        and type(obj["et"]) is int
    )


SIGNATURE_BYTES = 32


def signed_pickle(secret: str | bytes) -> tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """An opt-in pickle codec for payloads msgpack cannot carry: ``(serializer, deserializer)``
    with arq's signatures. Every payload is HMAC-SHA256-signed with ``secret``; the deserializer
    refuses (with :class:`SerializationError`) anything unsigned or forged *before* unpickling,
    so whoever can write to Redis but lacks the secret cannot run code in a worker.

    Use a long random secret shared by clients and workers, and keep it out of logs. Pass the
    pair as ``job_serializer``/``job_deserializer``.
    """
    key = secret.encode() if isinstance(secret, str) else bytes(secret)
    if len(key) < 16:
        raise SerializationError("signed_pickle secret is too short: use at least 16 random bytes")

    def dumps(obj: Any) -> bytes:
        try:
            body = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:
            raise SerializationError(f"cannot pickle {type(obj).__name__} value {truncate(obj)}: {e}") from e
        return hmac.new(key, body, hashlib.sha256).digest() + body

    def loads(data: bytes) -> Any:
        sig, body = data[:SIGNATURE_BYTES], data[SIGNATURE_BYTES:]
        if len(data) <= SIGNATURE_BYTES or not hmac.compare_digest(sig, hmac.new(key, body, hashlib.sha256).digest()):
            raise SerializationError(f"refused a pickle payload ({len(data)} bytes) without a valid signature")
        return pickle.loads(body)  # signed by a holder of the secret

    return dumps, loads
