"""Job ids: 22 characters of ordered base 64, increasing in creation order within a process,
even past the counter's end, with the creation time in their first 48 bits."""

from __future__ import annotations

import time

import pytest

from asyncjobs import connections
from asyncjobs.client import check_job_id, check_queue
from asyncjobs.connections import new_job_id
from asyncjobs.errors import ConfigError

ORDERED = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"


def decode(job_id: str) -> tuple[int, int, int]:
    """(creation ms, counter, random bits) of an id, decoded digit by digit."""
    value = 0
    for ch in job_id:
        value = value << 6 | ORDERED.index(ch)
    assert value >> 131 == 1  # the mark bit
    return value >> 84 & (1 << 47) - 1, value >> 72 & 0xFFF, value & (1 << 72) - 1


def test_ids_are_short_valid_and_increase_in_creation_order() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_job_id() for _ in range(20_000)]
    after = time.time_ns() // 1_000_000
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {len(i) for i in ids} == {22} and all(check_job_id(i) == i for i in ids)
    assert not any(i.startswith("-") for i in ids)  # never read as a command-line option
    created = [decode(i)[0] for i in ids]
    assert before <= created[0] and created[-1] <= after + 5  # the counter may carry a few ms ahead
    assert len({decode(i)[2] for i in ids}) == len(ids)  # random bits differ


def test_digits_are_in_ascii_order() -> None:  # so ids sort as strings by value
    assert sorted(ORDERED) == list(ORDERED) and len(set(ORDERED)) == 64
    assert connections._ORDERED.decode() == ORDERED


def test_ids_keep_increasing_when_a_millisecond_is_full_or_the_clock_steps_back(monkeypatch) -> None:
    clock = [1_800_000_000_000_000_000]  # ns
    monkeypatch.setattr(connections.time, "time_ns", lambda: clock[0])
    ids = [new_job_id() for _ in range(5_000)]  # more than one millisecond's counter holds
    clock[0] -= 5_000_000_000  # the wall clock steps back 5 s
    ids += [new_job_id() for _ in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert decode(ids[0])[0] == 1_800_000_000_000
    assert decode(ids[-1])[0] >= 1_800_000_000_000 + 1  # it carried into the next ms


@pytest.mark.parametrize("bad", ["a\n", "", "a b", "x" * 129])
def test_job_ids_and_queue_names_are_checked_whole(bad: str) -> None:
    # the patterns are also the OpenAPI document's: a final newline fits neither
    with pytest.raises(ConfigError):
        check_job_id(bad)
    with pytest.raises(ConfigError):
        check_queue(bad[:65])
    assert check_job_id("job-1:a.b_c") == "job-1:a.b_c" and check_queue("q-1.b_c") == "q-1.b_c"
