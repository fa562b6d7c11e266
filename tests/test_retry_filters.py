"""``@job(retry_on=..., no_retry_on=...)``: failures the filters refuse go straight to the dead
letters with the reason; arq's ``Retry(defer=...)`` is honoured whatever the filters say."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from arq.worker import Retry

from asyncjobs import ConfigError, JobFailed, job


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


class TransportError(ConnectionError):
    """A network failure worth retrying."""


def test_filters_must_be_exception_classes_and_not_in_both() -> None:
    async def f(ctx: Any) -> None:
        return None

    with pytest.raises(ConfigError, match=r"retry_on must name exception classes.*'ValueError'"):
        job(retry_on=("ValueError",))(f)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no_retry_on must name exception classes"):
        job(no_retry_on=(ValueError, 3))(f)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="ValueError is in both retry_on and no_retry_on"):
        job(retry_on=(ValueError, OSError), no_retry_on=ValueError)(f)
    one = job(retries=2, retry_on=OSError)(f)  # a single class is fine
    assert one.opts.retry_on == (OSError,) and one.opts.no_retry_on == ()


def test_matching_is_by_isinstance_and_no_retry_on_wins() -> None:
    async def f(ctx: Any) -> None:
        return None

    opts = job(retries=3, retry_on=(ConnectionError,), no_retry_on=(ConnectionRefusedError,))(f).opts
    assert opts.not_retried(TransportError("x")) is None  # a subclass of ConnectionError
    assert opts.not_retried(ConnectionRefusedError()) == "ConnectionRefusedError is not retried (no_retry_on)"
    assert opts.not_retried(KeyError("k")) == "KeyError is not in retry_on"
    assert job(retries=1)(f).opts.not_retried(KeyError("k")) is None  # no filters: everything retries


async def _fails_with(client: Any, start_worker: Any, error: BaseException, **filters: Any) -> tuple[Any, list[int]]:
    tries: list[int] = []

    @job(name=unique("filtered"), retries=3, backoff=0, **filters)
    async def filtered(ctx: Any) -> None:
        tries.append(ctx.job_try)
        raise error

    await start_worker([filtered])
    handle = await client.enqueue(filtered)
    with pytest.raises(JobFailed) as e:
        await handle.result(timeout=20)
    assert e.value.error_type.rsplit(".", 1)[-1] == type(error).__name__
    return handle, tries


async def _dead_reason(client: Any, job_id: str) -> str:
    _, entries = await client.dead_letters()
    (entry,) = [e for e in entries if e.job_id == job_id]
    return str(entry.reason)


async def test_no_retry_on_goes_straight_to_the_dead_letters(client, start_worker) -> None:
    handle, tries = await _fails_with(client, start_worker, ValueError("bad input"), no_retry_on=(ValueError,))
    assert tries == [1]
    assert await _dead_reason(client, handle.id) == "ValueError is not retried (no_retry_on)"


async def test_a_failure_outside_retry_on_is_not_retried(client, start_worker) -> None:
    handle, tries = await _fails_with(client, start_worker, KeyError("k"), retry_on=(ConnectionError,))
    assert tries == [1]
    assert await _dead_reason(client, handle.id) == "KeyError is not in retry_on"


async def test_a_failure_in_retry_on_is_retried_until_the_retries_run_out(client, start_worker) -> None:
    handle, tries = await _fails_with(client, start_worker, TransportError("down"), retry_on=(ConnectionError,))
    assert tries == [1, 2, 3, 4]
    assert await _dead_reason(client, handle.id) == "failed after 4 tries"


async def test_retry_with_defer_is_honoured_whatever_the_filters(client, start_worker) -> None:
    tries: list[int] = []

    @job(name=unique("deferred"), retries=1, retry_on=(ConnectionError,), no_retry_on=(Retry,))
    async def deferred(ctx: Any) -> str:
        tries.append(ctx.job_try)
        if ctx.job_try < 3:  # beyond retries=1: Retry is the job's own call, not a failure
            raise Retry(defer=0.05)
        return "done"

    await start_worker([deferred])
    handle = await client.enqueue(deferred)
    assert await handle.result(timeout=20) == "done"
    assert tries == [1, 2, 3]
