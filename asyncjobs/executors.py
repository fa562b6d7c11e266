"""Running plain (non-async) job functions off the event loop: ``@job(executor="process")`` and
``@job(executor="thread")``.

**Process jobs** run in a pool of spawned processes that are *killed* when their job is
cancelled (it timed out, was aborted, or the worker is shutting down): the CPU stops at once,
and the next job gets a fresh process. A pool process also dies with its worker (Linux:
``PR_SET_PDEATHSIG``; everywhere: EOF on its pipe once it is idle).

**Thread jobs** cannot be killed: Python has no way to stop a thread from outside. When a
thread job is cancelled, the job ends at once (failed on a timeout, aborted on an abort) and its
:func:`cancel_event` is set; the thread itself runs on until the function returns, so a long
thread job should check ``cancel_event().is_set()`` (or wait on it instead of ``time.sleep``)
and return early.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import importlib
import multiprocessing
import os
import signal
import threading
import traceback
import weakref
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

_cancel: contextvars.ContextVar[threading.Event] = contextvars.ContextVar("asyncjobs_cancel")


def cancel_event() -> threading.Event:
    """The cancel flag of the thread job running in this thread.

    It is set when the job is cancelled: its timeout passed, it was aborted, or the worker is
    shutting down. A thread cannot be killed, so a long ``@job(executor="thread")`` function
    should look at it and return early::

        @job(executor="thread", timeout=60)
        def crunch(rows: list[int]) -> int:
            for row in rows:
                if asyncjobs.cancel_event().is_set():
                    return 0  # nobody waits for this result any more
                ...

    ``cancel_event().wait(seconds)`` sleeps, waking early on a cancel. Outside a thread job
    (a unit test calling the function directly) it is an event nobody sets.
    """
    event = _cancel.get(None)
    return event if event is not None else threading.Event()


async def run_in_thread(func: Callable[..., Any], args: Any, kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` in a thread, its :func:`cancel_event` set if we are cancelled."""
    event = threading.Event()
    token = _cancel.set(event)  # asyncio.to_thread runs func in a copy of this context
    try:
        return await asyncio.to_thread(func, *args, **kwargs)
    except asyncio.CancelledError:
        event.set()
        raise
    finally:
        _cancel.reset(token)


class ProcessDied(RuntimeError):
    """The process running a job exited before it answered (killed by the OS, out of memory)."""


class RemoteTraceback(Exception):
    """The traceback of an exception raised in a pool process, chained to it as its cause."""

    def __str__(self) -> str:
        return str(self.args[0])


class ProcessPool:
    """Up to ``max_workers`` spawned processes that run plain functions, like
    :class:`concurrent.futures.ProcessPoolExecutor`, except that a call that is cancelled kills
    its process (the pool starts a new one when next needed)."""

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers = max_workers or os.cpu_count() or 1
        # spawn, not fork: a forked child would inherit the event loop and Redis sockets
        self._mp = multiprocessing.get_context("spawn")
        self._idle: list[_PoolProcess] = []
        self._all: set[_PoolProcess] = set()
        self._slots: asyncio.Semaphore | None = None
        # at interpreter exit, before multiprocessing joins its children (a busy one would hang it)
        weakref.finalize(self, _kill_all, self._all)

    async def run(self, target: tuple[str, str], args: Any, kwargs: Any) -> Any:
        """Call the function ``target`` (module, qualified name) in a pool process."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.max_workers)
        async with self._slots:
            proc = self._idle.pop() if self._idle else self._start()
            try:
                ok, value, remote_tb = await proc.call(target, args, kwargs)
            except BaseException:  # cancelled (timeout, abort, shutdown) or the process died
                self._kill(proc)
                raise
            self._idle.append(proc)
        if ok:
            return value
        raise value from RemoteTraceback(remote_tb)

    def _start(self) -> _PoolProcess:
        proc = _PoolProcess(self._mp)
        self._all.add(proc)
        return proc

    def _kill(self, proc: _PoolProcess) -> None:
        self._all.discard(proc)
        proc.kill()

    def shutdown(self) -> None:
        """Kill every pool process."""
        _kill_all(self._all)
        self._idle.clear()


def _kill_all(procs: set[_PoolProcess]) -> None:
    for proc in list(procs):
        procs.discard(proc)
        proc.kill()


class _PoolProcess:
    def __init__(self, mp: Any) -> None:
        self.conn, child = mp.Pipe()
        self.process = mp.Process(target=_serve, args=(child,), name="asyncjobs-process-job")
        self.process.start()
        child.close()

    async def call(self, target: tuple[str, str], args: Any, kwargs: Any) -> tuple[bool, Any, str]:
        self.conn.send((target, args, kwargs))
        loop = asyncio.get_running_loop()
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(self.conn.fileno(), ready)
        try:
            await readable
        finally:
            loop.remove_reader(self.conn.fileno())
        try:
            return self.conn.recv()  # type: ignore[no-any-return]
        except (EOFError, OSError):
            self.process.join(1.0)
            raise ProcessDied(f"the process running the job exited with {self.process.exitcode}") from None
        except Exception as e:  # an exception class that cannot be rebuilt here
            raise TypeError(f"the job's result or error cannot be unpickled: {e}") from None

    def kill(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()
        self.conn.close()
        # reap it off the event loop (after SIGKILL that takes a moment, not a job's length)
        threading.Thread(target=self.process.join, name="asyncjobs-reap", daemon=True).start()


def _serve(conn: Connection) -> None:  # pragma: no cover - runs in the pool process
    from asyncjobs.supervisor import die_with_parent

    die_with_parent(signal.SIGKILL)  # a job's CPU must not outlive its worker
    while True:
        try:
            target, args, kwargs = conn.recv()
        except (EOFError, OSError):  # the worker closed the pool or is gone
            return
        try:
            reply: tuple[bool, Any, str] = (True, call_in_process(target, args, kwargs), "")
        except BaseException as e:
            reply = (False, e, "".join(traceback.format_exception(e)))
        try:
            conn.send(reply)
        except Exception as e:  # a result or an exception that cannot be pickled
            what = "result" if reply[0] else "error"
            conn.send((False, TypeError(f"the job's {what} cannot be pickled: {e}"), reply[2]))


def call_in_process(target: tuple[str, str], args: Any, kwargs: Any) -> Any:
    """Runs in a pool process: import the job's module and call the plain function. (The
    module attribute is the :class:`JobFunction` the decorator returned; call what it wraps.)"""
    module, qualname = target
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return getattr(obj, "__wrapped__", obj)(*args, **kwargs)
