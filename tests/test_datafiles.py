"""The data directory: a job opens only regular files inside it, and its one error reveals
nothing about what lies outside (not even whether a file exists)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from asyncjobs import ConfigError, JobContext
from asyncjobs.datafiles import DataDir
from asyncjobs.errors import PathNotAllowed
from asyncjobs.examples import process_csv

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """``data/`` with good.csv, a symlink leading out and a subdirectory; ``outside/secret.csv``."""
    data, outside = tmp_path / "data", tmp_path / "outside"
    data.mkdir()
    outside.mkdir()
    (data / "good.csv").write_text("a,b\n1,2\n")
    (data / "sub").mkdir()
    (data / "sub" / "inner.csv").write_text("x\n5\n")
    (outside / "secret.csv").write_text("TOP-SECRET-HEADER,x\n1,2\n")
    (data / "leak.csv").symlink_to(outside / "secret.csv")
    (data / "environ.csv").symlink_to("/proc/self/environ")
    (data / "up").symlink_to(outside)
    os.mkfifo(data / "pipe.csv")
    return data, outside


def refused(data_dir: DataDir, path: str) -> str:
    """The error's message, with the (possibly shortened) path the caller gave blanked out."""
    with pytest.raises(PathNotAllowed) as e:
        data_dir.open(path).close()
    return str(e.value).replace(repr(e.value.path), "<path>")


def test_files_inside_open_by_relative_or_absolute_path(tree: tuple[Path, Path]) -> None:
    data, _ = tree
    d = DataDir(data)
    for path in ("good.csv", str(data / "good.csv"), "sub/../good.csv", "./sub/inner.csv"):
        with d.open(path) as f:
            assert f.read(1) in (b"a", b"x")


def test_everything_outside_is_refused_with_one_error_naming_only_the_given_path(tree: tuple[Path, Path]) -> None:
    data, _ = tree
    d = DataDir(data)
    attacks = [
        "/proc/self/environ",
        "/etc/passwd",
        str(ROOT / "settings.py"),
        "../outside/secret.csv",
        str(data / ".." / "outside" / "secret.csv"),
        "leak.csv",  # a symlink inside pointing out
        "environ.csv",
        "up/secret.csv",  # a symlinked directory pointing out
        "missing.csv",  # missing inside
        "/no/such/file.csv",  # missing outside
        "sub",  # a directory
        "pipe.csv",  # not a regular file (and must not block)
        "",
        "bad\x00byte",
    ]
    messages = {refused(d, p) for p in attacks}
    assert len(messages) == 1, messages  # missing and outside look the same
    (message,) = messages
    assert "/" not in message  # no server path, inside the directory or out


def test_a_data_dir_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ASYNCJOBS_DATA_DIR") as e:
        DataDir(tmp_path / "nope")
    assert e.value.key == "ASYNCJOBS_DATA_DIR"


async def test_process_csv_reads_only_inside_its_data_dir(tree: tuple[Path, Path]) -> None:
    data, _ = tree
    ctx = JobContext({"job_id": "local", "job_try": 1, "data_dir": DataDir(data)})
    assert (await process_csv(ctx, "good.csv"))["rows"] == 1
    for path in ("/proc/self/environ", "/etc/passwd", "leak.csv", "../outside/secret.csv"):
        with pytest.raises(PathNotAllowed):
            await process_csv(ctx, path)


async def test_process_csv_without_a_data_dir_reads_nothing(tree: tuple[Path, Path]) -> None:
    data, _ = tree
    with pytest.raises(PathNotAllowed, match="none is configured: set ASYNCJOBS_DATA_DIR"):
        await process_csv(JobContext({"job_id": "local", "job_try": 1}), str(data / "good.csv"))
