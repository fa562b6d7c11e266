"""The ``asyncjobs`` command: exit codes, one-line errors, enqueue/status/result/dead."""

from __future__ import annotations

import asyncio
import importlib.metadata
import itertools
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import asyncjobs
from asyncjobs import job
from asyncjobs.examples import count_words
from asyncjobs.testing import free_port

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "asyncjobs")


def run(env: dict[str, str], *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(p: subprocess.CompletedProcess[str], *needles: str) -> None:
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in p.stderr
    for n in needles:
        assert n in lines[0]


def test_malformed_redis_url(cli_env):
    p = run({**cli_env, "REDIS_URL": "redis//x"}, "queues")
    assert p.returncode != 0
    assert_one_line_error(p, "REDIS_URL", "'redis//x'", "redis://host:port/db")


def test_unreachable_redis(cli_env):
    url = f"redis://127.0.0.1:{free_port()}/0"
    p = run({**cli_env, "REDIS_URL": url}, "queues")
    assert p.returncode == 1
    assert_one_line_error(p, "cannot reach Redis at " + url, "REDIS_URL")


def test_version(cli_env):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert asyncjobs.__version__ == project["version"] == importlib.metadata.version("asyncjobs")
    p = run(cli_env, "--version")
    assert p.returncode == 0 and p.stdout == f"asyncjobs {project['version']}\n"


@pytest.mark.parametrize(
    "command",
    [["status", "x"], ["result", "x"], ["abort", "x"], ["queues"], ["workers"], ["dead", "list"], ["enqueue", "f"]],
)
def test_verbose_adds_the_traceback_to_every_command(cli_env, command):
    url = f"redis://127.0.0.1:{free_port()}/0"
    p = run({**cli_env, "REDIS_URL": url}, "--verbose", *command)
    assert p.returncode == 1
    assert "Traceback (most recent call last)" in p.stderr and "BrokerUnavailable" in p.stderr
    assert p.stderr.splitlines()[-1].startswith(f"error: cannot reach Redis at {url}")


@pytest.mark.parametrize(
    ("variable", "value", "needle"),
    [
        ("ASYNCJOBS_SMTP_PORT", "smtp", "ASYNCJOBS_SMTP_PORT 'smtp' is not an integer"),
        ("ASYNCJOBS_LEASE", "5s", "ASYNCJOBS_LEASE '5s' is not a number"),
    ],
)
@pytest.mark.parametrize("command", [["queues"], ["worker", "--burst"], ["web", "--port", "1"]])
def test_a_bad_setting_is_one_line_and_exit_2(cli_env, variable, value, needle, command):
    p = run({**cli_env, "ASYNCJOBS_SMTP_HOST": "mail.example", variable: value}, *command)
    assert p.returncode == 2
    assert_one_line_error(p, needle)


def test_unknown_setting_is_a_config_error(cli_env):
    p = run({**cli_env, "ASYNCJOBS_CONCURENCY": "3"}, "queues")
    assert p.returncode == 2
    assert_one_line_error(p, "ASYNCJOBS_CONCURENCY", "ASYNCJOBS_CONCURRENCY")


def test_settings_module_without_settings_is_a_config_error(cli_env, tmp_path):
    (tmp_path / "bare_settings.py").write_text("X = 1\n")
    env = {**cli_env, "PYTHONPATH": f"{tmp_path}:{cli_env['PYTHONPATH']}"}
    p = run(env, "--settings", "bare_settings", "web", "--port", "0")
    assert p.returncode == 2
    assert_one_line_error(p, "bare_settings", "SETTINGS")


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--args", '{"a":1}', "--args must be a JSON list"),
        ("--args", "[1,", "--args is not valid JSON"),
        ("--kwargs", "[1]", "--kwargs must be a JSON object"),
    ],
)
def test_bad_json_arguments_are_usage_errors(cli_env, flag, value, needle):
    p = run(cli_env, "enqueue", "count_words", flag, value)
    assert p.returncode == 2
    assert needle in p.stderr and "Traceback" not in p.stderr


def test_unknown_function_and_bad_arguments_exit_2(cli_env):
    p = run(cli_env, "enqueue", "count_wrods", "--args", '["x"]')
    assert p.returncode == 2
    assert_one_line_error(p, "count_wrods", "registered:")
    p = run(cli_env, "enqueue", "count_words", "--args", "[1, 2]")
    assert p.returncode == 2
    assert_one_line_error(p, "invalid arguments for count_words")


async def test_enqueue_with_priority(cli_env, client):
    p = run(cli_env, "enqueue", "count_words", "--args", '["a b"]', "--priority", "7", "--job-id", "cli-p")
    assert p.returncode == 0, p.stderr
    info = await client.job("cli-p").info()
    assert info.status is asyncjobs.JobStatus.QUEUED and info.priority == 7
    p = run(cli_env, "enqueue", "count_words", "--args", '["a"]', "--priority", "10")
    assert p.returncode == 2
    assert "--priority" in p.stderr and "0<=x<=9" in p.stderr and "Traceback" not in p.stderr
    p = run(cli_env, "enqueue", "count_words", "--args", '["a"]', "--priority", "3", "--defer-by", "5")
    assert p.returncode == 2
    assert_one_line_error(p, "priority 3 cannot be combined with defer_by")
    assert await client.redis.zcard(asyncjobs.keys.queue("default")) == 1  # only the first


async def test_enqueue_status_result_and_dead_letters(cli_env, client, start_worker):
    p = run(cli_env, "enqueue", "count_words", "--args", '["a b"]', "--job-id", "cli-1", "--defer-by", "60")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "cli-1"
    assert (await client.job("cli-1").info()).status.value == "deferred"
    p = run(cli_env, "status", "cli-1")
    assert p.returncode == 0 and '"status":"deferred"' in p.stdout
    p = run(cli_env, "abort", "cli-1")
    assert p.returncode == 0 and p.stdout.strip() == "aborted"
    p = run(cli_env, "result", "cli-1")
    assert p.returncode == 1
    assert_one_line_error(p, "cli-1", "CancelledError")

    p = run(cli_env, "status", "nope")
    assert p.returncode == 1 and '"status":"not_found"' in p.stdout
    p = run(cli_env, "result", "nope")
    assert p.returncode == 1
    assert_one_line_error(p, "job nope not found")

    @job(name="send_email", retries=0)
    async def broken_email(ctx, to: str, subject: str, body: str) -> None:
        raise OSError("smtp down")

    await start_worker([broken_email, count_words])
    failed = await client.enqueue_call("send_email", ["a@b.c", "s", "b"], job_id="mail-1")
    with pytest.raises(asyncjobs.JobFailed):
        await failed.result(timeout=10)
    p = run(cli_env, "dead", "list")
    assert p.returncode == 0
    assert "mail-1  send_email  tries=1  OSError: smtp down" in p.stdout
    assert "1 dead-lettered job(s)" in p.stderr
    p = run(cli_env, "dead", "retry", "mail-1")
    assert p.returncode == 0 and p.stdout.strip() == "mail-1"
    with pytest.raises(asyncjobs.JobFailed):
        await client.job("mail-1").result(timeout=10)
    p = run(cli_env, "dead", "purge")
    assert p.returncode == 0 and p.stdout.strip() == "purged 1"
    p = run(cli_env, "dead", "retry", "mail-1")
    assert p.returncode == 1
    assert_one_line_error(p, "no dead-lettered job mail-1")

    ok = await client.enqueue(count_words, "x y")
    assert await ok.result(timeout=10) == 2
    p = run(cli_env, "result", ok.id)
    assert p.returncode == 0 and p.stdout.strip() == "2"
    p = run(cli_env, "queues")
    assert p.returncode == 0 and p.stdout.startswith("default")


def test_enqueue_wait_reports_a_failed_job_with_exit_1(cli_env, spawn):
    spawn(sys.executable, "-m", "asyncjobs", "worker")
    p = run(cli_env, "enqueue", "send_email", "--args", '["not-an-address", "s", "b"]', "--wait", "--timeout", "20")
    assert p.returncode == 1
    assert p.stderr.strip().splitlines()[-1].startswith("error: job ")
    assert "ValueError" in p.stderr and "Traceback" not in p.stderr


def test_worker_rejects_bad_settings(cli_env, tmp_path):
    (tmp_path / "typo_settings.py").write_text(
        "from asyncjobs.examples import count_words\n"
        "class WorkerSettings:\n    functions = []\n    redis_url = 'redis://127.0.0.1:1/0'\n    max_job = 5\n"
    )
    p = run({**cli_env, "PYTHONPATH": f"{tmp_path}:{ROOT}"}, "worker", "typo_settings.WorkerSettings")
    assert p.returncode == 2
    assert "max_job" in p.stderr and "max_jobs" in p.stderr and "Traceback" not in p.stderr


def test_help_lists_the_commands():
    p = subprocess.run([CLI, "--help"], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0
    for cmd in ("enqueue", "status", "result", "abort", "queues", "workers", "dead", "worker"):
        assert cmd in p.stdout
    assert count_words.name == "count_words"


async def test_status_result_and_abort_find_a_job_on_another_queue(cli_env, client):
    await client.enqueue_call("count_words", ["a b"], job_id="cli-high", queue="high")
    p = run(cli_env, "status", "cli-high")
    assert p.returncode == 0, p.stdout
    assert '"status":"queued"' in p.stdout and '"queue":"high"' in p.stdout
    p = run(cli_env, "result", "cli-high")
    assert p.returncode == 1
    assert_one_line_error(p, "cli-high did not finish")
    p = run(cli_env, "abort", "cli-high")
    assert p.returncode == 0 and p.stdout.strip() == "aborted"


async def test_enqueue_refuses_a_cron_tick_id(cli_env, client):
    p = run(cli_env, "enqueue", "count_words", "--args", '["a"]', "--job-id", "cron:cleanup:1893456000000")
    assert p.returncode == 2
    assert_one_line_error(p, "job_id 'cron:cleanup:1893456000000' is reserved", "cron")
    assert await client.redis.zcard(asyncjobs.keys.queue("default")) == 0


async def test_cron_lists_schedule_next_runs_and_last_run(cli_env, private_redis):
    from datetime import UTC, datetime

    from arq.connections import RedisSettings, create_pool
    from croniter import croniter

    from asyncjobs.serialization import serialize

    server = private_redis()
    now = datetime.now(UTC)
    prev_ms = int(croniter("*/5 * * * *", now).get_prev(datetime).timestamp() * 1000)
    # the last tick's job, by its deterministic id, as a worker's cron enqueues it (arq's own call)
    pool = await create_pool(RedisSettings.from_dsn(server.url), job_serializer=serialize)
    await pool.enqueue_job("cleanup", _job_id=f"cron:cleanup:{prev_ms}")
    await pool.aclose()
    p = run({**cli_env, "REDIS_URL": server.url}, "cron", "--upcoming", "3")
    assert p.returncode == 0, p.stderr
    [line] = p.stdout.splitlines()
    m = re.fullmatch(r"cron:cleanup  \*/5 \* \* \* \* \(UTC\)  next: (.+)  last: (.+) queued", line)
    assert m, line
    nexts = [datetime.strptime(t, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) for t in m.group(1).split(", ")]
    assert len(nexts) == 3 and nexts[0] > now and all(t.minute % 5 == 0 and t.second == 0 for t in nexts)
    assert [(b - a).total_seconds() for a, b in itertools.pairwise(nexts)] == [300, 300]
    assert datetime.strptime(m.group(2), "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp() * 1000 == prev_ms


async def test_dead_retry_all(cli_env, private_redis, start_worker):
    server = private_redis()

    @job(name="send_email", retries=0)
    async def broken_email(ctx, to: str, subject: str, body: str) -> None:
        raise OSError("smtp down")

    await start_worker([broken_email], settings=asyncjobs.Settings(redis_url=server.url, lease=2.0))
    env = {**cli_env, "REDIS_URL": server.url}
    async with asyncjobs.connect(server.url) as c:
        handles = [await c.enqueue_call("send_email", ["a@b.c", "s", str(i)], job_id=f"m-{i}") for i in range(3)]
        for h in handles:
            with pytest.raises(asyncjobs.JobFailed):
                await h.result(timeout=10)
        assert (await c.dead_letters())[0] == 3
        p = await asyncio.to_thread(run, env, "dead", "retry", "--all")
        assert p.returncode == 0, p.stderr
        assert sorted(p.stdout.split()) == ["m-0", "m-1", "m-2"] and p.stderr == "retried 3\n"
        for h in handles:  # they ran again (and failed again)
            with pytest.raises(asyncjobs.JobFailed):
                await h.result(timeout=10)
        assert (await c.dead_letters())[0] == 3
    p = run(env, "dead", "retry")
    assert p.returncode == 2 and "give a JOB_ID or --all" in p.stderr


def test_ctrl_c_in_dev_says_it_was_interrupted(cli_env):
    import signal

    from asyncjobs.testing import stop_process

    env = {k: v for k, v in cli_env.items() if k != "REDIS_URL"}  # the in-memory broker
    cmd = [CLI, "dev", "--port", str(free_port())]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert b"listening on" in proc.stdout.readline()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    finally:
        stop_process(proc)
    assert proc.returncode == 0, err
    assert b"asyncjobs dev interrupted (Ctrl-C): stopping the API and the worker" in err
    assert b"SIGUSR1" not in err and b"Traceback" not in err
