"""Retry delay policies."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncjobs.backoff import Custom, Exponential, Fixed, as_backoff


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
