"""``asyncjobs enqueue-many FILE.jsonl``: counts, bad lines by number, exit codes, stdin, and
the plain progress output; the CLI runs as a subprocess on the test Redis."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from asyncjobs.examples import count_words

ROOT = Path(__file__).resolve().parents[1]
CLI = str(Path(sys.executable).parent / "asyncjobs")


def bulk(env: dict[str, str], *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {**env, "PYTHONPATH": f"{ROOT / 'tests'}:{ROOT}"}
    return subprocess.run(
        [CLI, "--settings", "cli_support", "enqueue-many", *args],
        cwd=ROOT, env=env, input=stdin.decode() if stdin is not None else None,
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def lines(*jobs: Any) -> bytes:
    return b"".join((j if isinstance(j, bytes) else orjson.dumps(j)) + b"\n" for j in jobs)


async def test_counts_bad_lines_and_duplicates_then_the_valid_jobs_run(cli_env, client, start_worker, tmp_path):
    jobs = [{"function": "count_words", "args": [f"w {i} x"], "job_id": f"bulk-{i}"} for i in range(30)]
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(
        lines(
            *jobs[:10],
            b'{"function": "count_words", "args": ["unterminated"',  # line 11
            {"function": "count_words", "args": ["again"], "job_id": "bulk-3"},  # line 12: id taken
            {"function": "count_words", "args": [5]},  # line 13: not a str
            {"function": "no_such_job"},  # line 14
            b"",  # line 15: blank, skipped
            *jobs[10:],
        )
    )
    done = await asyncio.to_thread(bulk, cli_env, str(path), "--progress", "none", "--batch-size", "7")
    assert done.returncode == 1, done.stderr
    assert "enqueued 30, duplicates skipped 1, rejected 3 of 35 lines" in done.stdout, done.stdout
    assert "rejected lines: 11, 13, 14" in done.stdout
    assert re.search(r"^line 11: not valid JSON", done.stderr, re.M), done.stderr
    assert re.search(r"^line 13: .*text", done.stderr, re.M), done.stderr
    assert re.search(r"^line 14: .*no_such_job", done.stderr, re.M), done.stderr
    await start_worker([count_words])
    results = [await client.job(f"bulk-{i}").result(timeout=30) for i in range(30)]
    assert results == [3] * 30  # bulk-3 kept its first arguments


async def test_reads_stdin(cli_env, client):
    data = lines(*({"function": "count_words", "args": ["a b"], "job_id": f"in-{i}"} for i in range(5)))
    done = await asyncio.to_thread(bulk, cli_env, "-", "--progress", "none", stdin=data)
    assert done.returncode == 0, done.stderr
    assert "enqueued 5, duplicates skipped 0, rejected 0 of 5 lines" in done.stdout
    statuses = [(await client.job(f"in-{i}").info()).status.value for i in range(5)]
    assert statuses == ["queued"] * 5


async def test_plain_progress_shows_increasing_counts(cli_env, tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(lines(*({"function": "count_words", "args": ["x"]} for _ in range(50))))
    done = await asyncio.to_thread(bulk, cli_env, str(path), "--progress", "plain", "--batch-size", "10")
    assert done.returncode == 0, done.stderr
    counts = [int(m) for m in re.findall(r"^\d+ lines: (\d+) enqueued", done.stderr, re.M)]
    assert counts[:5] == [10, 20, 30, 40, 50] and counts[-1] == 50, done.stderr


def test_usage_errors_exit_2(cli_env, tmp_path):
    missing = bulk(cli_env, str(tmp_path / "missing.jsonl"))
    assert missing.returncode == 2 and "missing.jsonl" in missing.stderr
    bad_batch = bulk(cli_env, "-", "--batch-size", "0", stdin=b"")
    assert bad_batch.returncode == 2


async def test_fields_are_checked_like_enqueue(cli_env, client, tmp_path):
    ok = {"function": "count_words", "args": ["a"]}
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(
        lines(
            {**ok, "job_id": "later", "defer_until": tomorrow},
            {**ok, "job_id": "urgent", "priority": 9.0, "queue": "default"},
            {**ok, "priority": 3, "defer_by": 10},  # line 3
            {**ok, "defer_until": "tomorrow"},  # line 4
            {**ok, "colour": "red"},  # line 5
            {**ok, "job_id": "bad id!"},  # line 6
            {**ok, "defer_by": 10, "defer_until": tomorrow},  # line 7
            [1, 2],  # line 8
            {**ok, "priority": True},  # line 9
        )
    )
    done = await asyncio.to_thread(bulk, cli_env, str(path), "--progress", "none")
    assert done.returncode == 1, done.stderr
    assert "enqueued 2, duplicates skipped 0, rejected 7 of 9 lines" in done.stdout, done.stdout
    reasons = dict(re.findall(r"^line (\d+): (.*)$", done.stderr, re.M))
    assert "priority" in reasons["3"] and "defer" in reasons["3"], reasons
    assert "ISO 8601" in reasons["4"] and "unknown field(s) colour" in reasons["5"], reasons
    assert "job id" in reasons["6"] and "not both" in reasons["7"] and "JSON object" in reasons["8"], reasons
    assert "priority must be a whole number" in reasons["9"], reasons
    assert (await client.job("later").info()).status.value == "deferred"
    assert (await client.job("urgent").info()).priority == 9


async def test_flow_control_fields_dedupe_debounce_and_throttle_lines(cli_env, client, tmp_path):
    words = {"function": "count_words"}
    path = tmp_path / "jobs.jsonl"
    path.write_bytes(
        lines(
            {**words, "args": ["a"], "dedupe_for": 600, "dedupe_key": "report-1"},  # created
            {**words, "args": ["a b"], "dedupe_for": 600, "dedupe_key": "report-1"},  # deduplicated
            {**words, "args": ["x"], "debounce": 600, "dedupe_key": "typing"},  # created, deferred
            {**words, "args": ["x y z"], "debounce": 600, "dedupe_key": "typing"},  # debounced: new arguments
            {**words, "args": ["t"], "throttle": 600, "throttle_key": "bulk-t"},  # created
            {**words, "args": ["t"], "throttle": 600, "throttle_key": "bulk-t"},  # throttled
            {**words, "args": ["b"], "dedupe_for": 60, "throttle": 60},  # line 7: two windows
            {**words, "args": ["c"], "throttle_key": "k"},  # line 8: a key without its window
            {**words, "args": ["d"], "debounce": "soon"},  # line 9: not seconds
        )
    )
    done = await asyncio.to_thread(bulk, cli_env, str(path), "--progress", "none", "--batch-size", "2")
    assert done.returncode == 1, done.stderr
    assert (
        "enqueued 3, 1 debounced, 1 deduplicated, 1 throttled, duplicates skipped 0, rejected 3 of 9 lines"
        in done.stdout
    ), done.stdout
    reasons = dict(re.findall(r"^line (\d+): (.*)$", done.stderr, re.M))
    assert "use one of dedupe_for, debounce and throttle" in reasons["7"], reasons
    assert "throttle_key needs throttle" in reasons["8"] and "debounce must be a number" in reasons["9"], reasons
    queued = [await client.job(i.decode()).info() for i in await client.redis.zrange("arq:queue", 0, -1)]
    assert sorted(tuple(r.args) for r in queued) == [("a",), ("t",), ("x y z",)]  # the debounced job's last args
    assert [r.status.value for r in queued if r.args == ["x y z"]] == ["deferred"]
