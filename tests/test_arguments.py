"""Job arguments: one check on every path (Python, CLI, HTTP), and rich values (pydantic
models, dataclasses, datetimes, UUIDs, decimals) delivered to the job as the annotated types."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from arguments_support import CASES, FUNCTIONS, REGISTRY, Point, takes_models

import asyncjobs
from asyncjobs import InvalidArguments, Settings
from asyncjobs.examples import count_words
from web.app import create_app

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "asyncjobs")
IDS = [c[0].name for c in CASES]


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**env, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"}
    cmd = [CLI, "--settings", "arguments_support", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)


@pytest.fixture
async def typed_client(redis_url):
    async with asyncjobs.connect(redis_url, registry=REGISTRY) as c:
        yield c


@pytest.mark.parametrize(("function", "value", "json_value", "expected"), CASES, ids=IDS)
async def test_python_enqueue_delivers_the_annotated_type(
    typed_client, start_worker, function, value, json_value, expected
):
    await start_worker(FUNCTIONS)
    handle = await typed_client.enqueue(function, value)
    assert await handle.result(timeout=10) == expected
    # the payload carries the JSON form: language-neutral, readable in the job record
    assert (await handle.info()).args == [json_value]
    by_name = await typed_client.enqueue_call(function.name, [value])
    assert await by_name.result(timeout=10) == expected


@pytest.mark.parametrize(("function", "value", "json_value", "expected"), CASES, ids=IDS)
async def test_cli_enqueue_delivers_the_annotated_type(
    cli_env, client, start_worker, function, value, json_value, expected
):
    import orjson

    p = run_cli(cli_env, "enqueue", function.name, "--args", orjson.dumps([json_value]).decode())
    assert p.returncode == 0, p.stderr
    await start_worker(FUNCTIONS)
    assert await client.job(p.stdout.strip()).result(timeout=10) == expected


@pytest.mark.parametrize(("function", "value", "json_value", "expected"), CASES, ids=IDS)
async def test_http_enqueue_delivers_the_annotated_type(
    aiohttp_client, redis_url, client, start_worker, function, value, json_value, expected
):
    api = await aiohttp_client(create_app(Settings(redis_url=redis_url), REGISTRY))
    r = await api.post("/api/jobs", json={"function": function.name, "args": [json_value]})
    assert r.status == 202, await r.text()
    job_id = (await r.json())["job_id"]
    await start_worker(FUNCTIONS)
    assert await client.job(job_id).result(timeout=10) == expected


async def test_keyword_arguments_and_defaults_are_converted_too(typed_client, start_worker):
    await start_worker(FUNCTIONS)
    h = await typed_client.enqueue(takes_models, ps=[Point(x=2, y=0)], scale=Decimal("1.5"))
    assert await h.result(timeout=10) == ["Point", "3.0"]
    h = await typed_client.enqueue(takes_models, [{"x": 2, "y": 0}])  # the JSON form is accepted too
    assert await h.result(timeout=10) == ["Point", "2"]


async def test_a_function_this_process_does_not_know_is_sent_unchecked(client, start_worker):
    """``client`` has no registry (a client of another code base, or arq interop): the JSON
    form goes as given and the worker still converts it."""
    await start_worker(FUNCTIONS)
    h = await client.enqueue_call("takes_model", [{"x": 5, "y": 6}])
    assert await h.result(timeout=10) == ["Point", 11]


async def test_python_checks_types_like_http(typed_client, aiohttp_client, redis_url):
    with pytest.raises(InvalidArguments) as e:
        await typed_client.enqueue(count_words, 5)  # type: ignore[arg-type]
    assert str(e.value) == "invalid arguments for count_words: text: Input should be a valid string"
    assert e.value.errors[0]["loc"] == ["text"]
    with pytest.raises(InvalidArguments, match=r"takes_model: p\.y: Field required"):
        await typed_client.enqueue_call("takes_model", [{"x": 1}])
    with pytest.raises(InvalidArguments, match="takes_decimal: d: "):
        await typed_client.enqueue_call("takes_decimal", ["not a number"])
    api = await aiohttp_client(create_app(Settings(redis_url=redis_url), REGISTRY))
    r = await api.post("/api/jobs", json={"function": "count_words", "args": [5]})
    assert r.status == 422
    assert (await r.json())["error"]["message"] == str(e.value)
    assert await typed_client.redis.zcard(asyncjobs.keys.queue("default")) == 0  # nothing written


def test_cli_checks_types_like_http(cli_env):
    p = run_cli(cli_env, "enqueue", "count_words", "--args", "[5]")
    assert p.returncode == 2
    assert p.stderr == "error: invalid arguments for count_words: text: Input should be a valid string\n"
    p = run_cli(cli_env, "enqueue", "takes_uuid", "--kwargs", '{"u": "nope"}')
    assert p.returncode == 2
    assert p.stderr.startswith("error: invalid arguments for takes_uuid: u: ") and p.stderr.count("\n") == 1


def test_parameter_names_pydantic_reserves_and_executor_functions_are_checked():
    @asyncjobs.job
    async def odd(ctx, model_name: str, json: int, copy: bool = False) -> None: ...

    odd.bind(("a", 1), {})
    with pytest.raises(InvalidArguments, match="odd: model_name: Input should be a valid string"):
        odd.bind((1, 1), {})

    @asyncjobs.job(executor="thread")
    def blocking(n: int) -> int:  # no ctx: its first parameter is an argument
        return n

    blocking.bind((3,), {})
    with pytest.raises(InvalidArguments, match="blocking: n: Input should be a valid integer"):
        blocking.bind(("3",), {})
