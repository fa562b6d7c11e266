"""``asyncjobs worker --processes N``: a supervisor process and its N worker processes.

The supervisor restarts a worker process that dies. One that keeps failing at start (a bad
setting, an import error) is restarted with exponential backoff, and after
:data:`MAX_START_FAILURES` failures in a row the supervisor stops the others and exits with
that process's error (:class:`~asyncjobs.errors.WorkerStartFailed`).

Worker processes never outlive their supervisor, even one killed with SIGKILL: each holds one
end of a socket pair whose other end only the supervisor holds, and stops (as on SIGTERM:
running jobs drain and are re-queued) when it reads EOF there. On Linux the kernel also sends
that SIGTERM at once (``PR_SET_PDEATHSIG``). The same socket carries a process's start error
back to the supervisor.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from asyncjobs.backoff import Exponential
from asyncjobs.errors import ConfigError, WorkerStartFailed

logger = logging.getLogger(__name__)

#: a worker process that exits sooner than this after its start failed to start
START_WINDOW_S = 10.0
#: start failures in a row after which the supervisor gives up
MAX_START_FAILURES = 5
#: delay before restarting a process that failed to start: 0.5 s, 1 s, 2 s, 4 s
RESTART_BACKOFF = Exponential(base=0.5, factor=2.0, cap=8.0, jitter=False)
POLL_S = 0.1
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
FD_OPTION = "--supervisor-fd"

_channel: socket.socket | None = None


@dataclass
class _Slot:
    proc: subprocess.Popen[bytes] | None = None
    sock: socket.socket | None = None
    started: float = 0.0
    failures: int = 0  # start failures in a row
    restart_at: float = 0.0


class Supervisor:
    """Runs ``processes`` copies of this ``asyncjobs worker`` command with ``--processes 1``."""

    def __init__(self, processes: int, argv: list[str]) -> None:
        self.argv = [sys.executable, "-m", "asyncjobs", *_strip_processes(argv[1:]), "--processes", "1"]
        self.slots = [_Slot() for _ in range(processes)]
        self.stopping = False

    def run(self) -> int:
        """Supervise until SIGTERM/SIGINT (forwarded; returns once every process has drained)."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for slot in self.slots:
            self._start(slot)
        while not self.stopping:
            for slot in self.slots:
                self._check(slot)
            time.sleep(POLL_S)
        return max((s.proc.wait() for s in self.slots if s.proc is not None), default=0)

    def _stop(self, signum: int, _frame: Any) -> None:
        self.stopping = True
        for s in self.slots:
            if s.proc is not None and s.proc.poll() is None:
                s.proc.send_signal(signum)

    def _start(self, slot: _Slot) -> None:
        ours, theirs = socket.socketpair()
        try:
            argv = [*self.argv, FD_OPTION, str(theirs.fileno())]
            slot.proc = subprocess.Popen(argv, pass_fds=[theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        slot.sock, slot.started = ours, time.monotonic()

    def _check(self, slot: _Slot) -> None:
        now = time.monotonic()
        if slot.proc is None:
            if now >= slot.restart_at and not self.stopping:
                self._start(slot)
            return
        code = slot.proc.poll()
        if code is None:
            return
        error = _read_error(slot.sock) or f"exited with code {code}"
        if slot.sock is not None:
            slot.sock.close()
        pid, slot.proc, slot.sock = slot.proc.pid, None, None
        slot.failures = slot.failures + 1 if now - slot.started < START_WINDOW_S else 0
        if slot.failures >= MAX_START_FAILURES:
            self._give_up(code, error)
        delay = RESTART_BACKOFF.delay(slot.failures) if slot.failures else 0.0
        slot.restart_at = now + delay
        logger.warning("worker process %d exited with %s (%s); restarting in %.1fs", pid, code, error, delay)

    def _give_up(self, code: int, error: str) -> None:
        self._stop(signal.SIGTERM, None)
        for s in self.slots:
            if s.proc is not None:
                s.proc.wait()
        raise WorkerStartFailed(MAX_START_FAILURES, error, exit_code=code if code in (1, 2) else 1)


def supervise(processes: int, argv: list[str]) -> int:
    """Run ``processes`` worker processes (see :class:`Supervisor`); the exit code."""
    return Supervisor(processes, argv).run()


def _read_error(sock: socket.socket | None) -> str:
    """The last line a worker process reported before it exited, or ``""``."""
    if sock is None:
        return ""
    sock.setblocking(False)
    with contextlib.suppress(OSError):
        lines = sock.recv(65536).decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else ""
    return ""


def _strip_processes(args: list[str]) -> list[str]:
    out, skip = [], False
    for a in args:
        if skip:
            skip = False
            continue
        if a in ("--processes", FD_OPTION):
            skip = True
            continue
        if a.startswith(("--processes=", FD_OPTION + "=")):
            continue
        out.append(a)
    return out


# --- in a worker process ------------------------------------------------------------------
def attach(fd: int) -> None:
    """In a supervised worker process: stop (SIGTERM to itself) when the supervisor is gone,
    and keep the socket to report a start failure on (:func:`report_failure`)."""
    global _channel
    try:
        _channel = socket.socket(fileno=fd)
    except OSError as e:
        raise ConfigError(f"{FD_OPTION} {fd} is not a socket ({e}): --processes N sets it, not you") from None
    kernel_signals = die_with_parent() and os.getppid() == _peer_pid(_channel)  # not already gone
    watch = threading.Thread(target=_watch, args=(_channel, kernel_signals), name="asyncjobs-supervisor", daemon=True)
    watch.start()


def _watch(sock: socket.socket, kernel_signals: bool) -> None:
    with contextlib.suppress(OSError):
        while sock.recv(64):  # the supervisor never writes: EOF means it is gone
            pass
    logger.warning("the supervisor is gone; stopping")
    if not kernel_signals:
        os.kill(os.getpid(), signal.SIGTERM)


def _peer_pid(sock: socket.socket) -> int:
    """The pid of the process that made the socket pair (Linux), or -1."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (OSError, AttributeError):
        return -1
    return int(struct.unpack("3i", creds)[0])


def report_failure(message: str) -> None:
    """Tell the supervisor (if any) why this process is about to exit."""
    if _channel is not None:
        with contextlib.suppress(OSError):
            _channel.sendall(message.replace("\n", " ").encode()[:4000] + b"\n")


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Linux: have the kernel send ``sig`` to this process when its parent exits; False where
    that is not available (callers also watch a pipe or socket from the parent for EOF)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False
