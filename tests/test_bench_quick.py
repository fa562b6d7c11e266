"""``python -m bench --quick`` runs end to end (a smoke test: no timing is asserted)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_bench_quick_runs_and_prints_ratios():
    cmd = [sys.executable, "-m", "bench", "--quick"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=110)
    assert p.returncode == 0, p.stderr[-2000:]
    for line in (
        "ratio pickup p50",
        "ratio result round trip p50",
        "ratio no-op throughput",
        "ratio worker CPU per job",
        "ratio I/O-bound wall",
        "ratio enqueue one by one",
        "ratio enqueue_many",
        "ratio Redis memory per job",
    ):
        assert line in p.stdout, p.stdout


def test_scale_bench_quick_runs_and_prints_its_figures():
    cmd = [sys.executable, "bench/scale_bench.py", "--quick"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    for line in (
        "1 worker process(es), jobs/s",
        "2 worker process(es), jobs/s",
        "Redis CPU, µs/job",
        "scaling, asyncjobs 2 / 1 process(es):",
        "one Redis core (one shard) serves at most",
        "projected ceiling: 1 shard(s)",
        "asyncjobs enqueue-many, 2,000 lines, progress bar:",
    ):
        assert line in p.stdout, p.stdout
    ours, arq = (float(x.replace(",", "")) for x in p.stdout.split("1 worker process(es), jobs/s")[1].split()[:2])
    assert ours > 0 and arq > 0


def test_dashboard_bench_quick_times_every_page():
    cmd = [sys.executable, "bench/dashboard_bench.py", "--quick"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert p.returncode in (0, 1), p.stderr[-2000:]  # 1: over the latency target, which is not asserted here
    assert "filled 10,000 queued + 10,000 finished jobs" in p.stdout, p.stdout
    for page in ("overview", "jobs, first page", "jobs, state=complete", "job page, a queued job", "workers", "cron"):
        line = next(x for x in p.stdout.splitlines() if x.strip().startswith(page))
        p50, p95 = float(line.split("p50")[1].split()[0]), float(line.split("p95")[1].split()[0])
        assert 0 < p50 <= p95, line
    assert "worst p95" in p.stdout


def test_memory_bench_quick_prints_bytes_per_layout():
    cmd = [sys.executable, "bench/memory_bench.py", "--quick"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    figures = {
        line.split(" B")[0].rsplit(None, 1)[0].strip(): float(line.split(" B")[0].rsplit(None, 1)[1])
        for line in p.stdout.splitlines()
        if line.startswith("  ")
    }
    assert len(figures) == 5, p.stdout
    now = figures["asyncjobs now: 22-character id, its payload, no TTL"]
    former_payload = figures["asyncjobs with the former payload (t and q)"]
    with_ttl = figures["asyncjobs with it and a 1-day TTL (former default)"]
    # each change undone costs memory: the payload's size class, the TTL, the longer ids
    assert 100 < now < former_payload < with_ttl < figures["asyncjobs with 32-hex ids too (the first batch)"], p.stdout
    assert "MEMORY USAGE arq:job:<id>" in p.stdout


def test_cluster_bench_quick_compares_both_layouts():
    cmd = [sys.executable, "bench/cluster_bench.py", "--quick"]
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {line.split("|")[1].strip(): line.split("|")[2:6] for line in p.stdout.splitlines() if line.startswith("| ")}
    assert {"one Redis", "cluster"} <= set(rows), p.stdout
    for layout in ("one Redis", "cluster"):
        rate, worker_us, redis_us, _ = (cell.strip() for cell in rows[layout])
        assert float(rate.replace(",", "")) > 0 and float(worker_us) > 0 and float(redis_us) > 0, p.stdout
    assert rows["one Redis"][3].strip() == "100%"  # one node did all the Redis work
    assert int(rows["cluster"][3].strip().rstrip("%")) < 100, p.stdout  # the shards shared it
    assert "cluster / one Redis: throughput" in p.stdout
