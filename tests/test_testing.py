"""``asyncjobs.testing.RedisServer``: a server with as many logical databases as asked for, and
the URL of each."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from asyncjobs.testing import RedisServer


def test_a_server_has_the_databases_asked_for_and_a_url_for_each(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, databases=40)
    server.start()
    try:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        last = redis.Redis.from_url(server.url_of(39))
        last.set("k", "v")
        assert last.dbsize() == 1
        assert redis.Redis.from_url(server.url).dbsize() == 0
        assert redis.Redis(port=server.port).config_get("databases") == {"databases": "40"}
        last.close()
    finally:
        server.stop()
    with pytest.raises(ValueError, match="database 40 is out of range: this server has 40"):
        server.url_of(40)


def test_a_password_goes_in_every_database_url(tmp_path: Path) -> None:
    server = RedisServer(tmp_path, password="pw")
    assert server.url_of(3) == f"redis://:pw@127.0.0.1:{server.port}/3"
    assert server.databases == 16  # Redis's default
