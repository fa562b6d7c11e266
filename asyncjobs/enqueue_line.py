"""A connection kept for one-by-one enqueues.

Through the pool, every command takes the pool's lock, polls the connection for stray data
and packs its arguments through redis-py's generic encoder: about as much client CPU as the
round trip itself. :class:`EnqueueLine` holds one connection of its own and writes the
enqueue script's EVALSHA to it directly (the constant head of the command packed once). It is
used while it is free; an enqueue that finds it busy (another task is mid-call) goes through
the pool as before, so concurrent enqueues still run in parallel. ``enqueue_many`` writes a
whole batch of EVALSHAs at once and reads the replies in order.

If the line's connection fails, the call is handed back to the pool's path (which reconnects
and retries); a job whose enqueue may have reached Redis before the failure is recognised by
its payload, so it is not reported as a duplicate of itself.
"""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError


class LineFailed(Exception):
    """The line's connection failed; whether the command reached Redis is unknown."""


def _bulk(value: Any) -> bytes:
    """One RESP bulk string: bytes as they are, str as UTF-8, ints as digits, anything else
    (a float) as its ``str``, like redis-py's encoder."""
    if isinstance(value, str):
        value = value.encode()
    elif isinstance(value, int):
        value = b"%d" % value
    elif not isinstance(value, bytes | bytearray | memoryview):
        value = str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(value), value)


class EnqueueLine:
    """One connection from ``pool.make_connection()``, owned here (close with :meth:`close`)."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._conn: AbstractConnection | None = None
        self._head = b""
        self._sha = ""
        self._nargs = -1
        #: packed bulk strings of the keys and channels that repeat call after call (a queue's)
        self._packed: dict[str, bytes] = {}
        self.busy = False

    def _pack(self, sha: str, key_list: list[str], argv: list[Any]) -> bytes:
        if sha != self._sha or len(key_list) + len(argv) != self._nargs:
            self._sha, self._nargs = sha, len(key_list) + len(argv)
            self._head = b"*%d\r\n$7\r\nEVALSHA\r\n%s%s" % (3 + self._nargs, _bulk(sha), _bulk(len(key_list)))
        parts = [self._head, *map(self._repeated, key_list)]
        if not argv:
            return b"".join(parts)
        for value in argv[:-1]:  # _bulk, inline: the enqueue's id, payload, score and ttl
            kind = type(value)
            if kind is str:
                value = value.encode()
            elif kind is int:
                value = b"%d" % value
            elif kind is not bytes:
                parts.append(_bulk(value))
                continue
            parts.append(b"$%d\r\n%s\r\n" % (len(value), value))
        parts.append(self._repeated(argv[-1]))
        return b"".join(parts)

    def _repeated(self, value: Any) -> bytes:
        """:func:`_bulk` of a value that repeats from call to call (the keys, the last argument:
        the enqueue script's wake channel), packed once per distinct string."""
        if type(value) is not str:
            return _bulk(value)
        packed = self._packed.get(value)
        if packed is None:
            if len(self._packed) >= 1024:  # bounded: many queues or flow keys
                self._packed.clear()
            packed = self._packed[value] = _bulk(value)
        return packed

    async def evalsha(self, sha: str, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """EVALSHA ``sha`` once per (keys, argv) in ``calls``, all in one write and one round
        trip. Each reply is the script's answer or, where Redis refused it, the error (a
        :class:`NoScriptError` if Redis does not know the script). Raises :class:`LineFailed`
        if the connection failed (it reconnects next time)."""
        packed = b"".join([self._pack(sha, k, a) for k, a in calls])
        if self._conn is None:
            self._conn = self._pool.make_connection()
        conn = self._conn
        self.busy = True
        try:
            await conn.send_packed_command(packed, check_health=False)
            replies: list[Any] = []
            for _ in calls:
                try:
                    replies.append(await conn.read_response())
                except ResponseError as e:
                    replies.append(e)
            return replies
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            # redis-py has already closed the connection; the next call reconnects
            raise LineFailed(str(e)) from e
        finally:
            self.busy = False

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.disconnect()
