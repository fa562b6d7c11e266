"""Job ids: UUIDv7, increasing in creation order within a process, even past the counter's end."""

from __future__ import annotations

import uuid

import pytest

from asyncjobs import connections
from asyncjobs.client import check_job_id, check_queue
from asyncjobs.connections import new_job_id
from asyncjobs.errors import ConfigError


def test_ids_are_uuid7_and_increase_in_creation_order() -> None:
    ids = [new_job_id() for _ in range(20_000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    u = uuid.UUID(ids[-1])
    assert u.version == 7 and u.variant == uuid.RFC_4122 and u.hex == ids[-1]


def test_ids_keep_increasing_when_a_millisecond_is_full_or_the_clock_steps_back(monkeypatch) -> None:
    clock = [1_800_000_000_000_000_000]  # ns
    monkeypatch.setattr(connections.time, "time_ns", lambda: clock[0])
    ids = [new_job_id() for _ in range(5_000)]  # more than one millisecond's counter holds
    clock[0] -= 5_000_000_000  # the wall clock steps back 5 s
    ids += [new_job_id() for _ in range(10)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert int(ids[-1][:12], 16) >= 1_800_000_000_000 + 1  # it carried into the next ms


@pytest.mark.parametrize("bad", ["a\n", "", "a b", "x" * 129])
def test_job_ids_and_queue_names_are_checked_whole(bad: str) -> None:
    # the patterns are also the OpenAPI document's: a final newline fits neither
    with pytest.raises(ConfigError):
        check_job_id(bad)
    with pytest.raises(ConfigError):
        check_queue(bad[:65])
    assert check_job_id("job-1:a.b_c") == "job-1:a.b_c" and check_queue("q-1.b_c") == "q-1.b_c"
