"""Slow and numerous clients against a real ``asyncjobs web`` subprocess on the real
redis-server: a slowloris client is cut off after the header timeout while ``/healthz`` keeps
answering, connections over the limit get a 503, and running out of file descriptors is
logged once per interval instead of once per attempt."""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
from typing import Any

import aiohttp
from web_support import Server

HEADER_TIMEOUT = 2.0
SLOW_CLIENTS = 200
ATTACK_S = 8.0  # how long each slow client keeps trickling unless the server cuts it off


async def trickle(port: int, closed_after: list[float]) -> None:
    """One slowloris connection: a request line, then one header line every 0.5 s."""
    loop = asyncio.get_running_loop()
    start = loop.time()  # before connecting: the server's timer starts when it accepts
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/queues HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    eof = asyncio.ensure_future(reader.read())
    n = 0
    while not eof.done() and loop.time() - start < ATTACK_S:
        await asyncio.wait([eof], timeout=0.5)  # the attack's pace
        n += 1
        with contextlib.suppress(ConnectionError):
            writer.write(b"X-Slow-%d: 1\r\n" % n)
    if eof.done():
        closed_after.append(loop.time() - start)
    else:
        eof.cancel()
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def health_latencies(base: str, stop: asyncio.Event) -> list[float]:
    """Time a fresh ``/healthz`` request every 0.2 s until ``stop``."""
    times: list[float] = []
    while not stop.is_set():
        start = time.monotonic()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, s.get(base + "/healthz") as r:
            assert r.status == 200
        times.append(time.monotonic() - start)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.2)
    return times


async def test_slowloris_is_cut_off_and_healthz_keeps_answering(start_server: Any, redis_url: str) -> None:
    server: Server = start_server("web", env={"REDIS_URL": redis_url, "ASYNCJOBS_HEADER_TIMEOUT": str(HEADER_TIMEOUT)})
    await server.wait_ready()
    stop = asyncio.Event()
    probe = asyncio.ensure_future(health_latencies(server.base, stop))
    closed_after: list[float] = []
    await asyncio.gather(*(trickle(server.port, closed_after) for _ in range(SLOW_CLIENTS)))
    stop.set()
    latencies = await probe
    assert len(closed_after) == SLOW_CLIENTS, f"{SLOW_CLIENTS - len(closed_after)} slow clients were never cut off"
    # cut off after the header timeout (not before), with a margin for a loaded machine
    assert min(closed_after) >= HEADER_TIMEOUT - 0.5 and max(closed_after) < HEADER_TIMEOUT + 4, closed_after
    assert latencies and max(latencies) < 2.0, latencies


async def first_line(reader: asyncio.StreamReader, timeout: float = 1.0) -> bytes:
    """The first line the server sends (b"" if it sends nothing in time, or closes)."""
    with contextlib.suppress(TimeoutError, ConnectionError):
        return await asyncio.wait_for(reader.readline(), timeout)
    return b""


async def test_connection_limit_evicts_silent_clients_then_answers_503(start_server: Any, redis_url: str) -> None:
    # a long header timeout: the kept-alive connections of the second part must stay open
    env = {"REDIS_URL": redis_url, "ASYNCJOBS_MAX_CONNECTIONS": "20", "ASYNCJOBS_HEADER_TIMEOUT": "60"}
    server: Server = start_server("web", env=env)
    await server.wait_ready()
    # 20 connections that never send a request fill the server; a real client still gets in,
    # by replacing the oldest of them
    silent = [await asyncio.open_connection("127.0.0.1", server.port) for _ in range(20)]
    for _ in range(10):
        async with aiohttp.ClientSession() as s, s.get(server.base + "/healthz") as r:
            assert r.status == 200

    async def closed(reader: asyncio.StreamReader) -> bool:
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(reader.read(), 3) == b""
        return False

    assert any(await asyncio.gather(*(closed(r) for r, _ in silent))), "no silent connection was replaced"
    for _, writer in silent:
        writer.close()
    # 20 connections that did send a request (kept alive) are not replaced: one more gets 503
    kept = []
    deadline = time.monotonic() + 10
    while len(kept) < 20:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        line = await first_line(reader, 5)
        if line.startswith(b"HTTP/1.1 200"):
            await reader.readuntil(b'"ok"}')
            kept.append(writer)
        else:  # a slot of the first phase is still being freed
            writer.close()
            assert time.monotonic() < deadline, line
    # one at a time: a silent newcomer would otherwise replace the one before it
    lines, extra = [], []
    for _ in range(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        extra.append(writer)
        lines.append(await first_line(reader, 5))
    assert all(line.startswith(b"HTTP/1.1 503") for line in lines), lines
    for writer in kept + extra:
        writer.close()


async def test_short_lived_connections_do_not_count_against_the_limit(start_server: Any, redis_url: str) -> None:
    # one request per connection, one connection at a time: never more than one is open, so
    # none may be refused however many there are (each is gone before the next is accepted)
    env = {"REDIS_URL": redis_url, "ASYNCJOBS_MAX_CONNECTIONS": "4"}
    server: Server = start_server("web", env=env)
    await server.wait_ready()
    lines = []
    for _ in range(30):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        lines.append(await first_line(reader, 5))
        with contextlib.suppress(ConnectionError):  # a 503 may come with a reset
            await asyncio.wait_for(reader.read(), 5)  # the server closes it
        writer.close()
    assert all(line.startswith(b"HTTP/1.1 200") for line in lines), lines


def _low_fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))


async def test_running_out_of_descriptors_is_logged_once_per_interval(
    redis_url: str, server_env: dict[str, str]
) -> None:
    env = {**server_env, "REDIS_URL": redis_url, "ASYNCJOBS_MAX_CONNECTIONS": "1000"}  # above the fd limit
    server = Server(["web"], env, preexec_fn=_low_fd_limit)
    try:
        await server.wait_ready()

        async def connect() -> Any:
            with contextlib.suppress(TimeoutError, OSError):
                return await asyncio.wait_for(asyncio.open_connection("127.0.0.1", server.port), 2.0)
            return None

        conns = [c for c in await asyncio.gather(*(connect() for _ in range(150))) if c is not None]
        await asyncio.sleep(3.0)  # the attack's duration: the server retries accept() all along
        for _, writer in conns:
            writer.close()
        await server.wait_ready()  # it recovers once the clients are gone
    finally:
        _, err = server.stop()
    assert "Too many open files" in err, err[-2000:]
    assert err.count("Too many open files") <= 3, err[-3000:]
    assert "Traceback" not in err, err[-3000:]


async def test_malformed_requests_log_no_traceback(start_server: Any, redis_url: str) -> None:
    server: Server = start_server("web", env={"REDIS_URL": redis_url})
    await server.wait_ready()
    bad = [b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", b"GET /x HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n"]
    for i in range(40):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(bad[i % 2])
        assert (await first_line(reader, 5)).startswith(b"HTTP/1.0 400"), i
        writer.close()
    _, err = server.stop()
    assert "Traceback" not in err, err[-3000:]
    assert err.count("malformed request") <= 2, err[-3000:]
