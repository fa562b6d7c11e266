"""``asyncjobs enqueue`` with --dedupe-for, --debounce and --throttle: the same job id back, a
note on stderr, exit 0; options that do not fit exit 2 with one line."""

from __future__ import annotations

import json
import uuid

import pytest
from test_cli import assert_one_line_error, run


def test_dedupe_prints_the_existing_job_id_with_a_note(cli_env) -> None:
    key = uuid.uuid4().hex
    args = ["enqueue", "count_words", "--args", '["a b"]', "--dedupe-key", key, "--dedupe-for", "30"]
    first = run(cli_env, *args)
    assert first.returncode == 0, first.stderr
    again = run(cli_env, *args[:3], '["c d e"]', *args[4:])
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == first.stdout.strip()
    assert f"deduplicated: job {first.stdout.strip()} holds the dedupe window" in again.stderr
    assert "deduplicated" not in first.stderr


def test_debounce_and_throttle_from_the_cli(cli_env) -> None:
    key = uuid.uuid4().hex
    deb = ["enqueue", "count_words", "--debounce", "30", "--dedupe-key", key, "--args"]
    first, again = run(cli_env, *deb, '["a"]'), run(cli_env, *deb, '["b"]')
    assert first.returncode == again.returncode == 0, again.stderr
    assert again.stdout == first.stdout and "debounced:" in again.stderr
    status = run(cli_env, "status", first.stdout.strip())
    assert status.returncode == 0 and json.loads(status.stdout)["args"] == ["b"]

    thr = ["enqueue", "count_words", "--throttle", "30", "--throttle-key", key, "--args"]
    first, dropped = run(cli_env, *thr, '["a"]'), run(cli_env, *thr, '["b"]')
    assert first.returncode == dropped.returncode == 0, dropped.stderr
    assert dropped.stdout == first.stdout and "throttled: dropped" in dropped.stderr


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--dedupe-key", "k"], "dedupe_key needs dedupe_for"),
        (["--throttle", "5", "--debounce", "5"], "use one of dedupe_for, debounce and throttle"),
        (["--debounce", "5", "--defer-by", "3"], "debounce defers the job itself"),
    ],
)
def test_flow_options_that_do_not_fit_exit_2(cli_env, extra: list[str], needle: str) -> None:
    p = run(cli_env, "enqueue", "count_words", "--args", '["a"]', *extra)
    assert p.returncode == 2
    assert_one_line_error(p, needle)
