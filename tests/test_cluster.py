"""A Redis Cluster node given as ``REDIS_URL`` is refused at connect time with a message that
says so, by the client, a worker and the web server, instead of a script's "non local key"
error at the first enqueue. Against a real 3-primary cluster started here."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import asyncjobs
from asyncjobs.connections import create_broker
from asyncjobs.testing import RedisClusterNodes
from web.app import watch_redis

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterNodes]:
    nodes = RedisClusterNodes(tmp_path_factory.mktemp("cluster"))
    nodes.start()
    yield nodes
    nodes.stop()


async def test_the_client_refuses_a_cluster_node(cluster):
    with pytest.raises(asyncjobs.ConfigError, match="is a Redis Cluster node") as e:
        async with asyncjobs.connect(cluster.url):
            pass
    assert e.value.key == "redis_url" and "Sentinel" in str(e.value)


def test_a_worker_exits_at_once_saying_why(cluster):
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCJOBS_")}
    env.update(REDIS_URL=cluster.url, PYTHONPATH=str(ROOT), ASYNCJOBS_EXAMPLES="1")
    done = subprocess.run(
        [sys.executable, "-m", "asyncjobs", "worker"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "is a Redis Cluster node" in done.stderr, done.stderr[-2000:]


async def test_the_web_server_logs_it_once_redis_answers(cluster, caplog):
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
