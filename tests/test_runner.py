"""``asyncjobs worker --processes N``: N supervised children, a dead one is restarted."""

from __future__ import annotations

import signal
import time

import psutil

from tests.conftest import PY


def children_of(pid: int, n: int, exclude: frozenset[int] = frozenset(), timeout: float = 30.0) -> list[int]:
    """Poll until ``pid`` has ``n`` live children not in ``exclude`` (sync: the supervisor is a subprocess)."""
    deadline = time.monotonic() + timeout
    while True:
        kids = [c.pid for c in psutil.Process(pid).children() if c.status() != psutil.STATUS_ZOMBIE]
        if len(kids) == n and not set(kids) & exclude:
            return kids
        assert time.monotonic() < deadline, f"expected {n} children, have {kids}"
        time.sleep(0.05)


def test_processes_supervises_n_children_and_restarts_a_killed_one(spawn):
    sup = spawn(PY, "-m", "asyncjobs", "worker", "--processes", "2")
    try:
        kids = children_of(sup.pid, 2)
        psutil.Process(kids[0]).send_signal(signal.SIGKILL)
        new = children_of(sup.pid, 2, exclude=frozenset({kids[0]}))
        assert kids[1] in new
        sup.send_signal(signal.SIGTERM)
        assert sup.wait(30) is not None
        assert not [c for c in psutil.process_iter() if c.pid in new and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if sup.poll() is None:
            sup.kill()
