"""Retry delay policies and the reconnect loop."""

from __future__ import annotations

import functools
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncjobs.backoff import Custom, Every, Exponential, Fixed, Retrying, as_backoff


def test_exponential_without_jitter_doubles_and_caps():
    b = Exponential(base=1, factor=2, cap=10, jitter=False)
    assert [b.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]


@settings(deadline=None)  # a loaded CI machine must not turn slowness into failure
@given(st.integers(min_value=1, max_value=200))
def test_exponential_jitter_stays_in_the_upper_half(attempt):
    b = Exponential(base=0.5, factor=3, cap=60)
    full = min(60, 0.5 * 3 ** (attempt - 1))
    assert full / 2 <= b.delay(attempt) <= full


def test_exponential_jitter_varies():
    b = Exponential(base=10, cap=1000)
    assert len({b.delay(3) for _ in range(50)}) > 1


def test_fixed_and_custom():
    assert Fixed(0.25).delay(1) == Fixed(0.25).delay(9) == 0.25
    assert Custom(lambda n: n * 1.5).delay(4) == 6.0


def test_as_backoff_coerces():
    assert isinstance(as_backoff(None), Exponential)
    assert as_backoff(3) == Fixed(3.0)
    assert as_backoff(0.5) == Fixed(0.5)
    policy = Exponential(base=2, jitter=False)
    assert as_backoff(policy) is policy
    custom = as_backoff(lambda n: 7)
    assert isinstance(custom, Custom) and custom.delay(1) == 7.0


@pytest.mark.parametrize(("value", "error"), [(-1, ValueError), (True, TypeError), ("5", TypeError)])
def test_as_backoff_rejects(value, error):
    with pytest.raises(error):
        as_backoff(value)


# --- Retrying: the one reconnect loop ------------------------------------------------------
class FakeTime:
    """A clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def retrying(t: FakeTime, **kw):
    log = logging.getLogger("test.retrying")
    return Retrying(
        log,
        "cannot reach {url} ({reason}); attempt {attempt}, next in {delay:.2f}s",
        recovered="back at {url} after {attempt} failed attempt(s)",
        policy=Exponential(base=0.5, factor=2, cap=2, jitter=False),
        warn=Every(5.0, clock=t.clock),
        sleep=t.sleep,
        url="redis://h",
        **kw,
    )


async def test_retrying_backs_off_exponentially_up_to_the_cap_and_resets(caplog):
    t = FakeTime()
    r = retrying(t)
    caplog.set_level(logging.DEBUG, "test.retrying")
    for _ in range(5):
        await r.pause(ConnectionError("refused"))
    assert t.slept == [0.5, 1.0, 2.0, 2.0, 2.0]
    assert r.succeeded() == 5
    await r.pause(OSError())
    assert t.slept[-1] == 0.5  # a new outage starts from the first delay again
    assert r.failures == 1


async def test_retrying_warns_at_most_every_few_seconds_and_logs_the_rest_at_debug(caplog):
    t = FakeTime()
    r = retrying(t)
    caplog.set_level(logging.DEBUG, "test.retrying")
    for _ in range(6):  # sleeps 0.5, 1, 2, 2, 2: the 5th attempt comes 5.5 s after the first
        await r.pause(ConnectionError("refused"))
    levels = [(rec.levelno, rec.getMessage()) for rec in caplog.records]
    assert levels[0] == (logging.WARNING, "cannot reach redis://h (refused); attempt 1, next in 0.50s")
    assert [lvl for lvl, _ in levels] == [logging.WARNING, *[logging.DEBUG] * 3, logging.WARNING, logging.DEBUG]
    caplog.clear()
    r.succeeded()
    assert [(rec.levelno, rec.getMessage()) for rec in caplog.records] == [
        (logging.INFO, "back at redis://h after 6 failed attempt(s)")
    ]


def test_retrying_failed_returns_the_delay_without_sleeping_and_names_an_empty_error(caplog):
    t = FakeTime()
    r = retrying(t)
    caplog.set_level(logging.DEBUG, "test.retrying")
    assert [r.failed(TimeoutError()), r.failed(TimeoutError())] == [0.5, 1.0]
    assert t.slept == []
    assert "(TimeoutError)" in caplog.records[0].getMessage()
    caplog.clear()
    assert r.succeeded() == 2 and r.succeeded() == 0
    assert len(caplog.records) == 1  # only the first success after failures says so


def test_every_is_due_once_per_period_and_can_be_shared():
    t = FakeTime()
    every = Every(5.0, clock=t.clock)
    seen = []
    for step in (0, 1, 3.9, 0.2, 5, 4.9, 0.1):
        t.now += step
        seen.append(every.due())
    assert seen == [True, False, False, True, True, False, True]


async def test_wait_until_reachable_retries_until_ping_answers_and_gives_up_after_attempts(monkeypatch):
    from asyncjobs import connections
    from asyncjobs.errors import BrokerUnavailable

    t = FakeTime()
    monkeypatch.setattr(connections, "Retrying", functools.partial(Retrying, sleep=t.sleep))
    answers = iter([OSError("refused"), OSError("refused"), None])

    async def ping() -> None:
        error = next(answers)
        if error is not None:
            raise error

    assert await connections.wait_until_reachable(ping, "redis://:secret@h:1/0") == 2
    assert len(t.slept) == 2 and all(0.025 <= s <= 0.1 for s in t.slept)  # RECONNECT: 50 ms, then 100 ms

    async def down() -> None:
        raise OSError("refused")

    with pytest.raises(BrokerUnavailable) as exc_info:
        await connections.wait_until_reachable(down, "redis://:secret@h:1/0", attempts=3)
    assert "secret" not in str(exc_info.value) and "refused" in str(exc_info.value)
    assert len(t.slept) == 2 + 2  # three attempts, two pauses between them
