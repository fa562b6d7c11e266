""":class:`EnqueueOptions` checks itself once, when built, and computes the queue score (and
run-at time) in one place, from a given ``now_ms``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from arq.utils import timestamp_ms

from asyncjobs import ConfigError, keys
from asyncjobs.registry import MAX_DEFER_S, EnqueueOptions

NOW = timestamp_ms()  # a fixed "now" (a defer_until is bounded from the real clock when built)


@pytest.mark.parametrize(
    ("given", "key", "message"),
    [
        ({"job_id": "a b"}, "job_id", "job id 'a b' is not valid"),
        ({"job_id": "cron:tick:1"}, "job_id", "job_id 'cron:tick:1' is reserved"),
        ({"queue": "no/slash"}, "queue", "queue name 'no/slash' is not valid"),
        ({"priority": 10}, "priority", "priority 10 is not valid"),
        ({"priority": 2.5}, "priority", "priority 2.5 is not valid"),
        ({"priority": True}, "priority", "priority True is not valid"),
        ({"priority": 3, "defer_by": 0}, "priority", "priority 3 cannot be combined with defer_by or defer_until"),
        ({"defer_by": -1}, "defer_by", "defer_by -1 is not a duration"),
        (
            {"defer_by": 5, "defer_until": datetime.now(UTC)},
            "defer_until",
            "use either defer_until or defer_by, not both",
        ),
        ({"defer_by": MAX_DEFER_S + 1}, "defer_by", "is too far ahead: at most 31622400 s (366 days) ahead"),
        ({"defer_until": datetime.now(UTC) + timedelta(days=367)}, "defer_until", "is too far ahead"),
        ({"defer_until": "2030-01-01"}, "defer_until", "is not a datetime"),
    ],
)
def test_each_rule_is_checked_when_built(given: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        EnqueueOptions(**given)
    assert e.value.key == key


def test_internal_options_take_ids_and_deferrals_as_arq_does() -> None:
    assert EnqueueOptions(job_id="cron:tick:1", internal=True).job_id == "cron:tick:1"
    assert EnqueueOptions(job_id="user 42 / welcome", internal=True).job_id == "user 42 / welcome"
    assert EnqueueOptions(defer_by=3 * 365 * 86400.0, internal=True).defer_by == 3 * 365 * 86400.0
    with pytest.raises(ConfigError, match="is not valid"):
        EnqueueOptions(job_id="a b")  # a client's own enqueue keeps the id rules


async def test_arqs_enqueue_job_takes_any_id_and_deferral(broker) -> None:
    """``ctx["redis"].enqueue_job`` is arq's API: any id, any deferral, a negative one meaning now."""
    job = await broker.enqueue_job("count_words", "a", _job_id="user 42 / welcome", _defer_by=-5)
    assert job is not None and job.job_id == "user 42 / welcome"
    score = await broker.zscore(broker.default_queue_name, "user 42 / welcome")
    assert score is not None and abs(score - timestamp_ms()) < 5_000  # due now, not read as a priority
    far = await broker.enqueue_job("count_words", "a", _defer_by=timedelta(days=3 * 365))
    assert far is not None


def test_valid_options_are_kept_as_given() -> None:
    o = EnqueueOptions("job-1", "q.1", timedelta(seconds=90), None, 0)  # type: ignore[arg-type]
    assert (o.job_id, o.queue, o.defer_by, o.priority) == ("job-1", "q.1", 90.0, 0)
    assert EnqueueOptions(defer_by=MAX_DEFER_S).defer_by == MAX_DEFER_S  # the bound itself is fine


def test_the_score_and_run_at_time() -> None:
    assert EnqueueOptions().score(NOW) == (NOW, NOW)
    assert EnqueueOptions(defer_by=1.5).score(NOW) == (NOW + 1500, NOW + 1500)
    assert EnqueueOptions(defer_by=0).score(NOW) == (NOW, NOW)
    future = datetime.fromtimestamp((NOW + 60_000) / 1000, UTC)
    assert EnqueueOptions(defer_until=future).score(NOW) == (NOW + 60_000, NOW + 60_000)
    past = datetime(2001, 1, 1, tzinfo=UTC)  # a past time means now, not a priority
    assert EnqueueOptions(defer_until=past).score(NOW) == (NOW, NOW)
    score, run_at = EnqueueOptions(priority=7).score(NOW)
    assert run_at == NOW and score == keys.priority_score(NOW, 7)
    assert keys.decode_score(score, NOW) == (NOW, 7)
