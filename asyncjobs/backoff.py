"""Retry delays: exponential with full jitter by default, capped; fixed and custom too."""

from __future__ import annotations

import random
from collections.abc import Callable
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
