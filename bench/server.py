"""A private redis-server on a free loopback port (never the default 6379), without persistence
so the benchmark measures the engines, not the disk."""

from __future__ import annotations

import tempfile

from asyncjobs.testing import RedisServer, free_port

__all__ = ["PrivateRedis", "free_port"]


class PrivateRedis:
    """``with PrivateRedis() as url:`` a redis-server of its own for one benchmark run."""

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory(prefix="asyncjobs-bench-")
        self.server = RedisServer(self.dir.name, appendonly=False)
        self.port = self.server.port

    @property
    def url(self) -> str:
        return self.server.url

    def __enter__(self) -> str:
        try:
            self.server.start()
        except RuntimeError as e:
            raise SystemExit(str(e)) from None
        return self.url

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
        self.dir.cleanup()
