"""The example jobs registered by ``settings.py``."""

from __future__ import annotations

import asyncio
import csv

import psutil
import pytest
from events_support import follow

import asyncjobs
from asyncjobs import JobContext, JobFailed
from asyncjobs.examples import cleanup, count_words, generate_report, process_csv, send_email


def ctx(**extra) -> JobContext:
    return JobContext({"job_id": "local", "job_try": 1, **extra})


async def test_count_words():
    assert await count_words(ctx(), "  the quick\tbrown\nfox ") == 4
    assert await count_words(ctx(), "") == 0


async def test_send_email_dry_run_and_validation():
    assert await send_email(ctx(), "a@example.com", "Hi", "body") == {
        "to": "a@example.com",
        "delivered": False,
        "dry_run": True,
    }
    with pytest.raises(ValueError, match="not an email address"):
        await send_email(ctx(), "nobody", "Hi", "body")


async def test_process_csv_statistics(tmp_path):
    path = tmp_path / "small.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "name", "score"])
        w.writerows([[1, "ann", 3.5], [2, "bob", ""], [3, "", -1], [4, "dee", "n/a"]])
    out = await process_csv(ctx(data_dir=str(tmp_path)), "small.csv")
    assert out["rows"] == 4
    by_name = {c["name"]: c for c in out["columns"]}
    assert by_name["id"] == {"name": "id", "non_empty": 4, "numeric": 4, "min": 1.0, "max": 4.0, "mean": 2.5}
    assert by_name["name"] == {"name": "name", "non_empty": 3, "numeric": 0}
    assert by_name["score"]["numeric"] == 2 and by_name["score"]["non_empty"] == 3
    assert by_name["score"]["min"] == -1.0 and by_name["score"]["max"] == 3.5


async def test_generate_report_through_a_worker(client, start_worker):
    h = await client.enqueue(generate_report, "Q3", sections=3, step_seconds=0)
    following = await follow(h)
    await start_worker([generate_report])
    events = await following
    assert [round(e["progress"]) for e in events if e["event"] == "progress"] == [33, 67, 100]
    out = await h.result(timeout=5)
    assert out["sections"] == 3 and out["text"].count("## Q3") == 3


async def test_cleanup_counts_dead_letters(client, start_worker):
    @asyncjobs.job(name="always_fails")
    async def always_fails(ctx) -> None:
        raise RuntimeError("x")

    await start_worker([cleanup, always_fails])
    with pytest.raises(JobFailed):
        await (await client.enqueue(always_fails)).result(timeout=10)
    out = await (await client.enqueue(cleanup)).result(timeout=10)
    assert out["dead_letters"] == 1


def write_big_csv(path, rows: int) -> None:
    with path.open("w") as f:
        f.write("id,city,amount,note\n")
        chunk = 50_000
        for start in range(0, rows, chunk):
            f.write("".join(f"{i},city{i % 97},{(i * 7) % 1000}.25,row {i}\n" for i in range(start, start + chunk)))


@pytest.mark.slow
async def test_process_csv_million_rows_keeps_worker_memory_flat(tmp_path, spawn, redis_url):
    path = tmp_path / "big.csv"
    write_big_csv(path, 1_000_000)
    assert path.stat().st_size > 30_000_000
    proc = spawn(__import__("sys").executable, "-m", "asyncjobs", "worker", env={"ASYNCJOBS_DATA_DIR": str(tmp_path)})
    worker = psutil.Process(proc.pid)
    loop = asyncio.get_running_loop()
    async with asyncjobs.connect(redis_url) as client:
        deadline = loop.time() + 20
        while not await client.workers():
            assert proc.poll() is None and loop.time() < deadline, "the worker did not start"
            await asyncio.sleep(0.05)
        # warm the worker up with the same job on a small file, so imports and first-use
        # allocations are in the baseline
        small = tmp_path / "small.csv"
        write_big_csv(small, 50_000)
        warm = await client.enqueue(process_csv, str(small))
        assert (await warm.result(timeout=20))["rows"] == 50_000
        baseline = worker.memory_info().rss
        peak = baseline
        done = asyncio.Event()

        async def sample() -> None:
            nonlocal peak
            while not done.is_set():
                peak = max(peak, worker.memory_info().rss)
                await asyncio.sleep(0.02)

        sampler = loop.create_task(sample())
        h = await client.enqueue(process_csv, str(path), progress_every_s=0.2)
        events = [e async for e in h.events(timeout=60)]
        out = await h.result(timeout=10)
        done.set()
        await sampler
    assert out["rows"] == 1_000_000
    numeric = {c["name"]: c["numeric"] for c in out["columns"]}
    assert numeric == {"id": 1_000_000, "city": 0, "amount": 1_000_000, "note": 0}
    progress = [e for e in events if e["event"] == "progress"]
    assert len(progress) >= 4, progress
    percents = [p["progress"] for p in progress]
    assert percents == sorted(percents) and percents[-1] == 100
    assert any(0 < p < 100 for p in percents)
    assert progress[-1]["meta"] == {"rows": 1_000_000}
    growth_mb = (peak - baseline) / 2**20
    assert growth_mb < 30, f"worker RSS grew {growth_mb:.1f} MB while streaming a {path.stat().st_size >> 20} MB CSV"
