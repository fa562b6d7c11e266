"""Retry delays (exponential with jitter by default, capped; fixed and custom too) and the
one reconnect loop, :class:`Retrying`, that everything waiting for Redis uses."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol


class BackoffPolicy(Protocol):
    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first retry)."""


@dataclass(frozen=True)
class Exponential:
    """``base * factor ** (attempt - 1)`` capped at ``cap``; with ``jitter`` a random point
    in the upper half of that, so a burst of failures does not retry in lock step."""

    base: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        d = min(self.cap, self.base * self.factor ** max(0, attempt - 1))
        return d / 2 + random.uniform(0, d / 2) if self.jitter else d


#: waiting for Redis (a first connection, a lost one): 50 ms doubling to at most 1 s, jittered
#: in the upper half, so work resumes within a second of Redis answering without every
#: worker knocking in lock step
RECONNECT = Exponential(base=0.05, factor=2.0, cap=1.0)


@dataclass(frozen=True)
class Fixed:
    """The same delay before every retry."""

    seconds: float

    def delay(self, attempt: int) -> float:
        return self.seconds


@dataclass(frozen=True)
class Custom:
    """Any ``attempt -> seconds`` function."""

    func: Callable[[int], float]

    def delay(self, attempt: int) -> float:
        return float(self.func(attempt))


BackoffLike = BackoffPolicy | float | int | Callable[[int], float] | None


def as_backoff(value: BackoffLike) -> BackoffPolicy:
    """``None`` → exponential with jitter; a number → fixed; a callable → custom."""
    if value is None:
        return Exponential()
    if isinstance(value, bool):
        raise TypeError("backoff must be a number of seconds, a callable or a policy, not a bool")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"backoff {value} is negative: give seconds >= 0")
        return Fixed(float(value))
    if hasattr(value, "delay"):
        return value
    if callable(value):
        return Custom(value)
    raise TypeError(f"backoff {value!r} is not a number, callable or policy")


class Every:
    """True at most once per ``seconds`` (the first call included): rate-limits a log line.
    One instance may be shared, so many connections warn about one outage as one."""

    def __init__(self, seconds: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        now = self.clock()
        if self._last is not None and now - self._last < self.seconds:
            return False
        self._last = now
        return True


#: how often a Redis outage is logged at warning level (the other attempts: debug)
WARN_EVERY_S = 5.0


class Retrying:
    """The one reconnect loop: a run of failed attempts at something that talks to Redis.

    ``await retrying.pause(error)`` after a failure counts it, logs ``message`` (at warning
    level at most every :data:`WARN_EVERY_S`, else at debug) and sleeps the policy's delay
    (default :data:`RECONNECT`: 50 ms doubling to 1 s, jittered); :meth:`failed` does the
    same without sleeping, for a caller that waits its own way (a thread, a fixed period).
    :meth:`succeeded` ends the run (logging ``recovered`` if attempts had failed).

    ``message`` and ``recovered`` are ``str.format`` templates over ``fields`` plus
    ``reason`` (the error's text), ``attempt`` (failures so far) and ``delay`` (seconds);
    ``clock`` and ``sleep`` are injectable for tests."""

    def __init__(
        self,
        log: logging.Logger,
        message: str,
        *,
        recovered: str | None = None,
        policy: BackoffPolicy = RECONNECT,
        warn: Every | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        **fields: object,
    ) -> None:
        self.log = log
        self.message = message
        self.recovered = recovered
        self.policy = policy
        self.warn = warn if warn is not None else Every(WARN_EVERY_S)
        self.sleep = sleep
        self.fields = fields
        self.failures = 0

    def failed(self, error: BaseException) -> float:
        """Count a failed attempt, log it, and return the delay before the next one."""
        self.failures += 1
        delay = self.policy.delay(self.failures)
        level = logging.WARNING if self.warn.due() else logging.DEBUG
        if self.log.isEnabledFor(level):
            reason = str(error) or type(error).__name__
            self.log.log(level, self.message.format(reason=reason, attempt=self.failures, delay=delay, **self.fields))
        return delay

    async def pause(self, error: BaseException) -> None:
        """:meth:`failed`, then sleep its delay."""
        await self.sleep(self.failed(error))

    def succeeded(self) -> int:
        """An attempt worked: the run of failures ends. Returns how many there were."""
        failures, self.failures = self.failures, 0
        if failures and self.recovered is not None:
            self.log.info(self.recovered.format(attempt=failures, **self.fields))
        return failures
