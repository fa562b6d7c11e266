"""Cluster mode on a real 3-primary Redis Cluster started here: queues named with a hash tag
spread over the shards, and on them jobs run, return results, retry, are dead-lettered,
aborted, scheduled by cron, listed by the web API, and re-run after their worker is killed.
What cluster mode cannot do is refused with a message that says so."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

import aiohttp
import playwright.sync_api as playwright_api
import pytest
import redis
from arq.connections import create_pool
from reliability_app import read_runs
from reliability_support import Workers, wait_for

import asyncjobs
from asyncjobs import JobContext, JobStatus, cron, job, keys
from asyncjobs.cluster import ClusterBroker
from asyncjobs.config import Settings
from asyncjobs.connections import create_broker
from asyncjobs.cron import cron_table
from asyncjobs.redis_url import arq_settings, parse
from asyncjobs.testing import InProcessWorkers, RedisClusterNodes, free_port
from tests.web.dashboard_support import BROWSER_ARGS, CHROMIUM, SETTINGS_MODULE, call, write_settings
from web.app import watch_redis

ROOT = Path(__file__).resolve().parents[1]
expect = playwright_api.expect


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("cluster"))
    nodes.start()
    yield nodes
    nodes.stop()


@pytest.fixture
async def workers() -> AsyncIterator[InProcessWorkers]:
    w = InProcessWorkers()
    yield w
    await w.close()


runs: dict[str, int] = {}
started: dict[str, asyncio.Event] = {}


@job
async def c_add(ctx: JobContext, a: int, b: int) -> int:
    return a + b


@job(retries=2, backoff=0.05)
async def c_flaky(ctx: JobContext, name: str) -> int:
    runs[name] = runs.get(name, 0) + 1
    if ctx.job_try < 3:
        raise ConnectionError(f"try {ctx.job_try} fails")
    return ctx.job_try


@job(retries=0)
async def c_broken(ctx: JobContext) -> None:
    raise ValueError("always broken")


@job
async def c_wait(ctx: JobContext, name: str) -> str:
    started.setdefault(name, asyncio.Event()).set()
    await asyncio.sleep(60)
    return "not aborted"


@job
async def c_tick(ctx: JobContext) -> str:
    return "tick"


FUNCTIONS = [c_add, c_flaky, c_broken, c_wait, c_tick]


async def test_queues_on_every_shard_run_jobs_with_results(cluster, workers):
    queues = cluster.queue_per_node("run")
    await workers.start(FUNCTIONS, settings=Settings(redis_url=cluster.cluster_url, lease=2.0), queues=queues)
    async with asyncjobs.connect(cluster.cluster_url, queues=queues, default_queue=queues[0]) as client:
        assert isinstance(client.redis, ClusterBroker)
        handles = [await client.enqueue(c_add.options(queue=q), i, 100) for i, q in enumerate(queues * 5)]
        results = [await h.result(timeout=20) for h in handles]
        assert results == [i + 100 for i in range(len(handles))]
        for h, q in zip(handles, queues * 5, strict=True):
            assert h.id.startswith(q)  # a job's id starts with its queue's tag ...
            node = redis.Redis(port=cluster.node_of(keys.queue(q)))
            assert node.exists(keys.result(h.id)) == 1  # ... so its result lives on its queue's node
        rec = await client.job(handles[0].id).info()
        assert rec.status is JobStatus.COMPLETE and rec.queue == queues[0] and rec.function == "c_add"
        many = await client.enqueue_many([asyncjobs.call(c_add.options(queue=q), 1, 1) for q in queues * 10])
        assert [await h.result(timeout=20) for h in many if h] == [2] * 30  # one pipeline over 3 shards
        stats = {s.name: s for s in await client.queue_stats()}
        assert [stats[q].complete for q in queues] == [15, 15, 15]
    assert len({cluster.node_of(keys.queue(q)) for q in queues}) == 3  # every shard served a queue


async def test_retries_dead_letters_and_aborts(cluster, workers):
    queues = cluster.queue_per_node("life")
    await workers.start(FUNCTIONS, settings=Settings(redis_url=cluster.cluster_url, lease=2.0), queues=queues)
    async with asyncjobs.connect(cluster.cluster_url, queues=queues, default_queue=queues[0]) as client:
        flaky = await client.enqueue(c_flaky.options(queue=queues[1]), "flaky")
        assert await flaky.result(timeout=20) == 3 and runs["flaky"] == 3

        broken = [await client.enqueue(c_broken.options(queue=q)) for q in queues]
        for h in broken:
            with pytest.raises(asyncjobs.JobFailed, match="always broken"):
                await h.result(timeout=20)
        total, letters = await client.store.dead_letters()
        assert total == 3 and {d.job_id for d in letters} == {h.id for h in broken}
        assert {d.queue for d in letters} == set(queues)
        again = await client.retry_dead(broken[2].id)  # a dead letter runs again, on its queue
        assert again.id == broken[2].id
        with pytest.raises(asyncjobs.JobFailed, match="always broken"):
            await again.result(timeout=20)
        assert (await client.dead_letters())[0] == 3
        assert await client.purge_dead() == 3
        assert (await client.dead_letters())[0] == 0

        first = await client.enqueue(c_add.options(queue=queues[1], dedupe_for=60), 5, 5)
        same = await client.enqueue(c_add.options(queue=queues[1], dedupe_for=60), 5, 5)
        assert same.id == first.id and await same.result(timeout=20) == 10  # deduplicated in its slot

        running = await client.enqueue(c_wait.options(queue=queues[2]), "abort-me")
        await asyncio.wait_for(started.setdefault("abort-me", asyncio.Event()).wait(), 20)
        assert await running.abort(timeout=10)
        assert (await running.info()).status is JobStatus.ABORTED

        later = await client.enqueue(c_add.options(queue=queues[0], defer_by=3600), 1, 2)
        assert await later.abort(timeout=10)
        assert (await later.info()).status is JobStatus.ABORTED


async def test_cron_ticks_run_on_a_tagged_queue(cluster, workers):
    queues = cluster.queue_per_node("cron")
    tick = cron("* * * * * *", c_tick, name="c_tick_every_second")
    settings = Settings(redis_url=cluster.cluster_url, lease=2.0, poll_delay=0.2)
    await workers.start(FUNCTIONS, settings=settings, cron_jobs=[tick], queues=queues)
    node = redis.Redis(port=cluster.node_of(keys.queue(queues[0])))

    def tick_results() -> list[bytes]:
        return [k for k in node.scan_iter(keys.result(queues[0] + "cron:c_tick_every_second:*"))]

    found = await wait_for(tick_results, "a cron tick to run on the first queue's node", timeout=20)
    assert found
    async with asyncjobs.connect(cluster.cluster_url, queues=queues, default_queue=queues[0]) as client:

        async def last_tick_complete() -> bool:  # what the dashboard's Cron page shows
            (row,) = await cron_table(client, [tick])
            return row["last"]["status"] == "complete" and row["last"]["job_id"].startswith(queues[0])

        await wait_for(last_tick_complete, "the cron table to show the last tick complete", timeout=20)


async def test_the_web_api_lists_and_shows_jobs(cluster, tmp_path):
    queues = cluster.queue_per_node("web")
    w = Workers(tmp_path, cluster.cluster_url, queue=",".join(queues))
    try:
        w.start()
        port = free_port()
        w.start_web(port)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
            base = f"http://127.0.0.1:{port}"

            async def ready() -> bool:
                try:
                    async with http.get(f"{base}/readyz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_for(ready, "the web server to be ready", timeout=30)
            ids = []
            for q in queues:
                async with http.post(f"{base}/api/jobs", json={"function": "rel_work", "args": [0.0], "queue": q}) as r:
                    assert r.status == 202, await r.text()
                    ids.append((await r.json())["job_id"])
            for job_id in ids:

                async def complete(job_id: str = job_id) -> bool:
                    async with http.get(f"{base}/api/jobs/{job_id}") as r:
                        return r.status == 200 and (await r.json())["status"] == "complete"

                await wait_for(complete, f"job {job_id} to complete over the API", timeout=30)
            async with http.get(f"{base}/api/dashboard/jobs", params={"limit": "50"}) as r:
                assert r.status == 200, await r.text()
                listed = {j["job_id"] for j in (await r.json())["jobs"]}
            assert set(ids) <= listed  # the history merges every tag's recent jobs
            async with http.get(f"{base}/api/queues") as r:
                assert r.status == 200
                counts = {q["name"]: q["complete"] for q in (await r.json())["queues"]}
            assert all(counts[q] >= 1 for q in queues)
            async with http.get(f"{base}/metrics") as r:
                assert r.status == 200, await r.text()
                exposition = await r.text()
            for q in queues:  # the Prometheus queue gauges cover every shard's queues
                assert f'queue="{q}"' in exposition
    finally:
        w.close()


async def test_a_killed_workers_job_runs_again(cluster, tmp_path):
    queues = cluster.queue_per_node("kill")
    w = Workers(tmp_path, cluster.cluster_url, queue=",".join(queues))
    try:
        first = w.start()
        async with asyncjobs.connect(cluster.cluster_url, queues=queues, default_queue=queues[1]) as client:
            from reliability_app import rel_work

            handle = await client.enqueue(rel_work.options(queue=queues[1]), 3.0)
            await wait_for(lambda: any(r[0] == handle.id for r in read_runs(w.runlog)), "the job to start", timeout=30)
            os.kill(first.proc.pid, signal.SIGKILL)
            killed = time.monotonic()
            w.start()
            assert await handle.result(timeout=40) is not None
            again_s = time.monotonic() - killed
        tries = [r[1] for r in read_runs(w.runlog) if r[0] == handle.id]
        assert tries == [1, 2], tries  # run once more, by the second worker, after the lease lapsed
        assert again_s < 30
    finally:
        w.close()


async def test_untagged_queues_are_refused(cluster, workers):
    with pytest.raises(asyncjobs.ConfigError, match=r"hash tag.*'default' has none \(name it \{default\}"):
        async with asyncjobs.connect(cluster.cluster_url):
            pass
    with pytest.raises(asyncjobs.ConfigError, match=r"'plain' has none \(name it \{plain\}"):
        await workers.start(FUNCTIONS, settings=Settings(redis_url=cluster.cluster_url), queues=["{ok}", "plain"])


async def test_plain_arq_workers_cannot_join(cluster):
    settings = arq_settings(parse(cluster.cluster_url))  # what a WorkerSettings class holds
    with pytest.raises(asyncjobs.ConfigError, match="plain arq workers cannot join cluster mode"):
        await create_pool(settings)


async def test_a_job_id_keeps_its_queues_tag(cluster):
    async with asyncjobs.connect(cluster.cluster_url, queues=["{ids}"], default_queue="{ids}") as client:
        h = await client.enqueue(c_add.options(job_id="mine"), 1, 2)
        assert h.id == "{ids}mine"
        with pytest.raises(asyncjobs.ConfigError, match=r"holds the hash tag \{other\}"):
            await client.enqueue(c_add.options(job_id="{other}mine"), 1, 2)


async def test_a_redis_url_to_a_cluster_node_says_how_to_use_it(cluster):
    with pytest.raises(asyncjobs.ConfigError, match="is a Redis Cluster node") as e:
        async with asyncjobs.connect(cluster.url):
            pass
    assert e.value.key == "redis_url" and "redis+cluster://" in str(e.value)


def test_a_worker_with_a_redis_url_to_a_node_exits_saying_why(cluster):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOBS_")}
    env.update(REDIS_URL=cluster.url, PYTHONPATH=str(ROOT), ASYNCJOBS_EXAMPLES="1")
    done = subprocess.run(
        [sys.executable, "-m", "asyncjobs", "worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "is a Redis Cluster node" in done.stderr, done.stderr[-2000:]


async def test_the_web_server_logs_it_once_redis_answers(cluster, caplog):
    import logging

    caplog.set_level(logging.ERROR)
    broker = create_broker(cluster.url)
    try:
        await watch_redis(broker, cluster.url)
    finally:
        await broker.aclose(close_connection_pool=True)
    assert "is a Redis Cluster node" in caplog.text


async def test_a_standalone_redis_is_not_refused(redis_url):
    async with asyncjobs.connect(redis_url) as client:
        assert await client.redis.ping()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:  # refused until it listens (URLError is an OSError)
        return False


def test_the_dashboard_shows_and_retries_jobs_of_every_shard(cluster, tmp_path):
    queues = cluster.queue_per_node("dash")
    path = os.pathsep.join([str(write_settings(tmp_path)), str(ROOT)])  # the dashboard tests' jobs
    w = Workers(tmp_path, cluster.cluster_url, queue=",".join(queues), settings=f"{SETTINGS_MODULE}.WorkerSettings")
    w.env["PYTHONPATH"] = path
    flag = tmp_path / "flag"
    try:
        w.start()
        port = free_port()
        w.start_web(port)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while not _answers(base + "/readyz"):
            assert time.monotonic() < deadline, "the web server did not get ready"
            time.sleep(0.05)
        texts = {q: " ".join(["w"] * (n + 2)) for n, q in enumerate(queues)}  # 2, 3 and 4 words
        work = [{"function": "count_words", "args": [texts[q]], "queue": q} for q in queues]
        ids = [call(base, "POST", "/api/jobs", body)[1]["job_id"] for body in work]
        body = {"function": "flaky", "kwargs": {"flag": str(flag)}, "queue": queues[2]}
        failing = call(base, "POST", "/api/jobs", body)[1]["job_id"]
        deadline = time.monotonic() + 30
        while any(call(base, "GET", f"/api/jobs/{quote(i, safe='')}")[1]["status"] != "complete" for i in ids):
            assert time.monotonic() < deadline, "the jobs did not complete"
            time.sleep(0.05)
        wait = {"timeout": 20_000}
        with playwright_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS)
            page = browser.new_page()
            page.set_default_timeout(20_000)
            page.goto(base + "/#/jobs")
            for job_id in ids:  # the history lists the jobs of every shard
                expect(page.locator("tr", has_text=job_id)).to_contain_text("complete", **wait)
            page.goto(base + f"/#/job/{quote(ids[1], safe='')}")
            expect(page.locator("#result")).to_have_text("3", **wait)
            page.on("dialog", lambda d: d.accept())
            page.goto(base + "/#/dead")
            row = page.locator(f"tr[data-job='{failing}']")
            expect(row).to_contain_text("RuntimeError: flag file", **wait)
            flag.write_text("ok")  # the retry succeeds: its row goes and stays gone
            row.locator("button.retry").click()
            expect(row).to_have_count(0, **wait)
            page.goto(base + f"/#/job/{quote(failing, safe='')}")
            expect(page.locator("#result")).to_contain_text("recovered", **wait)
            browser.close()
    finally:
        w.close()


async def test_the_cli_loads_a_backlog_over_every_shard(cluster, tmp_path):
    queues = cluster.queue_per_node("cli")
    w = Workers(tmp_path, cluster.cluster_url, queue=",".join(queues))
    lines = [json.dumps({"function": "rel_work", "args": [0.0], "queue": q}) for q in queues * 20]
    backlog = tmp_path / "jobs.jsonl"
    backlog.write_text("\n".join(lines) + "\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "asyncjobs", "--settings", "reliability_app", *args]
        return subprocess.run(command, cwd=ROOT, env=w.environ(), capture_output=True, text=True, timeout=60)

    try:
        loaded = cli("enqueue-many", str(backlog))
        assert loaded.returncode == 0, loaded.stderr[-2000:]
        w.start()
        await wait_for(lambda: len(read_runs(w.runlog)) == 60, "the 60 jobs to run", timeout=30)
        shown = cli("queues")
        assert shown.returncode == 0, shown.stderr[-2000:]
        for q in queues:
            assert q in shown.stdout
    finally:
        w.close()


running: set[str] = set()
most_at_once: list[int] = [0]


@job(max_concurrency=1)
async def c_one_at_a_time(ctx: JobContext) -> int:
    running.add(ctx.job_id)
    most_at_once[0] = max(most_at_once[0], len(running))
    await asyncio.sleep(0.05)
    running.discard(ctx.job_id)
    return most_at_once[0]


async def test_limits_and_pauses_hold_in_a_tag(cluster, workers):
    queues = cluster.queue_per_node("limits")
    settings = Settings(redis_url=cluster.cluster_url, lease=2.0, concurrency=10)
    await workers.start([*FUNCTIONS, c_one_at_a_time], settings=settings, queues=queues)
    async with asyncjobs.connect(cluster.cluster_url, queues=queues, default_queue=queues[0]) as client:
        handles = [await client.enqueue(c_one_at_a_time.options(queue=queues[0])) for _ in range(5)]
        assert [await h.result(timeout=20) for h in handles] == [1] * 5  # never two at once

        await client.store.pause(queue=queues[1])
        held = await client.enqueue(c_add.options(queue=queues[1]), 2, 2)
        other = await client.enqueue(c_add.options(queue=queues[2]), 3, 3)
        assert await other.result(timeout=20) == 6  # another tag's queue is not paused
        rec = await held.info()
        assert rec.status is JobStatus.QUEUED and rec.waiting == "paused"
        assert (await client.store.paused())["queues"] == [queues[1]]
        await client.store.resume(queue=queues[1])
        assert await held.result(timeout=20) == 4


def test_every_whole_script_that_reads_the_tag_defines_it():
    from asyncjobs import deadletter, lua, pausing, scripts, workflow_scripts

    whole = [
        *(getattr(scripts, n) for n in ("ENQUEUE", "ENQUEUE_FLOW", "CLAIM", "FINISH", "ABORT_QUEUED", "END_PLAIN")),
        *(getattr(scripts, n) for n in ("INDEX_ONE", "RENEW")),
        *(getattr(workflow_scripts, n) for n in ("NODES", "START", "ABORT", "CANCEL")),
        pausing.RESUME_FUNCTION,
        deadletter._PUT,
        deadletter._TAKE,
    ]
    tagged = [s for s in whole if "TAG)" in s]
    assert len(tagged) >= 7  # the enqueues, claim and ends read set-wide keys of their tag
    assert all(s.startswith(lua.TAG_PREAMBLE) for s in tagged)


async def test_the_tagged_layout_on_one_redis(redis_url, start_worker):
    """A queue named with a tag keeps its set-wide keys apart on a standalone Redis too, so a
    deployment can name its queues this way before it moves to a cluster."""
    await start_worker(FUNCTIONS, queues=["{solo}"])
    async with asyncjobs.connect(redis_url, queues=["{solo}"], default_queue="{solo}") as client:
        h = await client.enqueue(c_broken)
        with pytest.raises(asyncjobs.JobFailed):
            await h.result(timeout=20)
        r = client.redis
        assert h.id.startswith("{solo}")
        assert await r.zscore("asyncjobs:dead{solo}", h.id) is not None
        assert await r.zscore("asyncjobs:dead", h.id) is None
        assert await r.zscore("asyncjobs:recent{solo}", h.id) is not None
        assert (await client.dead_letters())[0] == 1


async def test_workers_ride_out_a_node_killed_and_restarted(tmp_path, workers):
    """The primary that holds the client's event subscription SIGKILLed under a worker serving
    every shard: the worker does not exit (it backs off for the lost node's queue), a job
    enqueued meanwhile on another shard runs and its result arrives by event (the subscription
    moves to a live node; the client's poll is 60 s), and jobs of every queue run again once
    the node is back."""
    nodes = RedisClusterNodes(tmp_path / "nodes", full_coverage=False)
    nodes.start()
    try:
        queues = nodes.queue_per_node("ride")
        settings = Settings(redis_url=nodes.cluster_url, lease=2.0, poll_delay=0.2)
        await workers.start(FUNCTIONS, settings=settings, queues=queues)
        (_, task), *_ = workers._started
        connect = asyncjobs.connect(nodes.cluster_url, queues=queues, default_queue=queues[0], poll_interval=60)
        async with connect as client:
            first = [await client.enqueue(c_add.options(queue=q), 1, 1) for q in queues]
            assert [await h.result(timeout=20) for h in first] == [2, 2, 2]
            victim = client.hub._pubsub.connection.port  # the node the client's events come through
            survivor = next(q for q in queues if nodes.node_of(keys.queue(q)) != victim)
            nodes.kill_node(victim)

            async def enqueue_elsewhere() -> asyncjobs.JobHandle[int] | None:
                try:
                    return await client.enqueue(c_add.options(queue=survivor), 20, 1)
                except (redis.exceptions.RedisError, OSError):
                    return None  # (the client re-reads the cluster's layout after a lost node)

            during = await wait_for(enqueue_elsewhere, "an enqueue on a surviving shard", timeout=20)
            assert await during.result(timeout=15) == 21  # while the node is still down
            nodes.restart_node(victim)
            after = [await client.enqueue(c_add.options(queue=q), 2, 3) for q in queues]
            assert [await h.result(timeout=30) for h in after] == [5, 5, 5]
        assert not task.done()  # the worker never exited
    finally:
        await workers.close()  # (before its Redis goes)
        nodes.stop()
