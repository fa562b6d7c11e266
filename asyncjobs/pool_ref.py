"""A worker's Redis pool before it exists: arq's ``Worker`` opens its pool in ``main()``, while
the engine's parts (claimer, finisher, runner, housekeeper) are built in ``Worker.__init__``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any


class PoolRef:
    """Reaches the pool ``get()`` returns at the time of each call."""

    def __init__(self, get: Callable[[], Any]) -> None:
        self._get = get

    def __call__(self) -> Any:
        """The pool (arq's ``Worker.pool``: raises if the worker has not connected)."""
        return self._get()

    def register_script(self, source: str) -> Callable[..., Awaitable[Any]]:
        """A script called as redis-py's are (``await script(keys=..., args=...)``), registered
        on the pool at its first call."""
        script: Any = None
        pool: Any = None

        async def call(**kwargs: Any) -> Any:
            nonlocal script, pool
            current = self._get()
            if script is None or pool is not current:  # a pool opened again after a close
                script, pool = current.register_script(source), current
            return await script(**kwargs)

        return call
