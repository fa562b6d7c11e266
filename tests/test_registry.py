"""``@job`` and :class:`Registry`."""

from __future__ import annotations

from datetime import timedelta

import pytest

from asyncjobs import ConfigError, InvalidArguments, JobFunction, Registry, UnknownFunction, job
from asyncjobs.backoff import Exponential, Fixed


@job
async def plain(ctx, a: int, b: str = "x") -> str:
    """Docstring kept."""
    return f"{a}{b}"


@job(name="renamed", timeout=timedelta(seconds=3), retries=2, backoff=1.5, queue="high", keep_result=60)
async def configured(ctx, *, flag: bool) -> bool:
    return flag


def test_bare_decorator_defaults():
    assert isinstance(plain, JobFunction)
    assert plain.name == "plain" and plain.__name__ == "plain" and plain.__doc__ == "Docstring kept."
    o = plain.opts
    assert (o.timeout, o.retries, o.queue, o.keep_result) == (None, 0, None, None)
    assert isinstance(o.backoff, Exponential) and o.backoff.jitter


def test_decorator_options():
    o = configured.opts
    assert (configured.name, o.timeout, o.retries, o.queue, o.keep_result) == ("renamed", 3.0, 2, "high", 60.0)
    assert o.backoff == Fixed(1.5)


async def test_wrapper_is_still_callable():
    assert await plain(None, 1, "y") == "1y"
    assert await configured(None, flag=True) is True


@pytest.mark.parametrize(("args", "kwargs"), [((1,), {}), ((1, "z"), {}), ((), {"a": 1, "b": "q"})])
def test_bind_accepts_matching_arguments(args, kwargs):
    plain.bind(args, kwargs)


@pytest.mark.parametrize(("args", "kwargs"), [((), {}), ((1, 2, 3), {}), ((1,), {"nope": 1})])
def test_bind_rejects_mismatched_arguments(args, kwargs):
    with pytest.raises(InvalidArguments) as exc_info:
        plain.bind(args, kwargs)
    assert exc_info.value.function == "plain"
    assert "invalid arguments for plain" in str(exc_info.value)


def test_options_do_not_collide_with_function_kwargs():
    @job
    async def takes_queue(ctx, queue: str, job_id: str) -> str:
        return queue + job_id

    placed = takes_queue.options(job_id="abc", queue="low", defer_by=timedelta(seconds=2))
    assert placed.enqueue_options.job_id == "abc"
    assert placed.enqueue_options.queue == "low"
    assert placed.enqueue_options.defer_by == 2.0
    assert takes_queue.enqueue_options.job_id is None  # the original is untouched
    placed.bind(("q",), {"job_id": "j"})  # the function's own parameters stay usable
    again = placed.options(queue="other")
    assert (again.enqueue_options.job_id, again.enqueue_options.queue) == ("abc", "other")


@pytest.mark.parametrize(
    "bad",
    [{"retries": -1}, {"retries": True}, {"retries": 1.5}, {"timeout": -2}, {"keep_result": "soon"}, {"backoff": -1}],
)
def test_bad_options_are_rejected(bad):
    with pytest.raises((ConfigError, ValueError, TypeError)):

        @job(**bad)
        async def f(ctx) -> None: ...


def test_sync_function_is_rejected():
    with pytest.raises(ConfigError, match="async def"):

        @job
        def f(ctx) -> None: ...


def test_registry_lookup_and_errors():
    reg = Registry([plain, configured])
    assert reg.names() == ["plain", "renamed"] and len(reg) == 2
    assert "plain" in reg and "nope" not in reg
    assert reg.get("renamed") is configured
    assert list(reg) == [plain, configured]
    with pytest.raises(UnknownFunction) as exc_info:
        reg.get("plian")
    assert exc_info.value.function == "plian"
    assert "registered: plain, renamed" in str(exc_info.value)


def test_registry_rejects_duplicates_and_non_jobs():
    reg = Registry([plain])
    reg.add(plain)  # the same function again is fine

    @job(name="plain")
    async def other(ctx) -> None: ...

    with pytest.raises(ConfigError, match="two job functions are named 'plain'"):
        reg.add(other)

    async def undecorated(ctx) -> None: ...

    with pytest.raises(ConfigError, match=r"@asyncjobs\.job"):
        reg.add(undecorated)  # type: ignore[arg-type]
