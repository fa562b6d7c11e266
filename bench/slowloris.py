"""A slowloris attack on ``asyncjobs web``, measured: does ``/healthz`` keep answering, and
how much does the server log?

    python bench/slowloris.py [CLIENTS] [SECONDS] [FD_LIMIT] [--reconnect]   # 1100 30 1024

Starts a private redis-server and ``asyncjobs web`` with its open-file limit set to FD_LIMIT,
then keeps CLIENTS connections trickling one header line every 5 s for SECONDS (with
``--reconnect`` a client the server cuts off reconnects at once: a connection flood), while
another process times a fresh ``/healthz`` request every 0.5 s.
Prints how many probes got 200, another status, or no answer within 5 s, the probe latencies,
and the server's stderr size. ``ASYNCJOBS_*`` variables reach the server, e.g.
``ASYNCJOBS_MAX_CONNECTIONS=5000`` lifts the connection limit above the open-file limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from asyncjobs.testing import RedisServer, free_port, stop_process  # noqa: E402


async def slow_client(port: int, until: float, cut: list[int], reconnect: bool) -> None:
    first = True
    while time.monotonic() < until and (first or reconnect):
        first = False
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            await asyncio.sleep(0.5)
            continue
        writer.write(b"GET /api/queues HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        eof = asyncio.ensure_future(reader.read())
        n = 0
        while not eof.done() and time.monotonic() < until:
            await asyncio.wait([eof], timeout=5.0)
            n += 1
            with contextlib.suppress(ConnectionError):
                writer.write(b"X-Slow-%d: 1\r\n" % n)
        if eof.done():
            cut[0] += 1
            with contextlib.suppress(Exception):
                eof.result()
        else:
            eof.cancel()
        writer.close()


async def probe(base: str, until: float) -> tuple[list[float], dict[str, int]]:
    latencies: list[float] = []
    outcomes = {"200": 0, "other": 0, "no answer": 0}
    timeout = aiohttp.ClientTimeout(total=5)
    while time.monotonic() < until:
        start = time.monotonic()
        try:
            async with aiohttp.ClientSession(timeout=timeout) as s, s.get(base + "/healthz") as r:
                outcomes["200" if r.status == 200 else "other"] += 1
                latencies.append(time.monotonic() - start)
        except (aiohttp.ClientError, TimeoutError):
            outcomes["no answer"] += 1
        await asyncio.sleep(0.5)
    return latencies, outcomes


def probe_process(port: int, seconds: float) -> tuple[list[float], dict[str, int]]:
    """Run :func:`probe` in a process of its own, so the attacking clients do not slow it."""
    code = (
        "import asyncio, json, sys, time; sys.path.insert(0, sys.argv[1]); from bench.slowloris import probe; "
        "print(json.dumps(asyncio.run(probe(sys.argv[2], time.monotonic() + float(sys.argv[3])))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT), f"http://127.0.0.1:{port}", str(seconds)],
        capture_output=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    latencies, outcomes = json.loads(out)
    return latencies, outcomes


async def attack(port: int, clients: int, seconds: float, reconnect: bool) -> None:
    until = time.monotonic() + seconds
    cut = [0]
    prober = asyncio.get_running_loop().run_in_executor(None, probe_process, port, seconds)
    await asyncio.gather(*(slow_client(port, until, cut, reconnect) for _ in range(clients)))
    latencies, outcomes = await prober
    print(f"/healthz probes: {outcomes}")
    if latencies:
        q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else latencies * 19
        print(f"/healthz latency: median {statistics.median(latencies) * 1000:.1f} ms, p95 {q[18] * 1000:.1f} ms")
    print(f"slow connections cut off by the server: {cut[0]}")


def main() -> None:
    reconnect = "--reconnect" in sys.argv
    args = [a for a in sys.argv[1:] if a != "--reconnect"]
    clients = int(args[0]) if len(args) > 0 else 1100
    seconds = float(args[1]) if len(args) > 1 else 30.0
    fd_limit = int(args[2]) if len(args) > 2 else 1024
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # this client needs > CLIENTS
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp))
        redis.start()
        port = free_port()
        env = {**os.environ, "REDIS_URL": redis.url, "PYTHONPATH": str(ROOT)}  # ASYNCJOBS_* pass through
        proc = subprocess.Popen(
            [sys.executable, "-m", "asyncjobs", "web", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (fd_limit, fd_limit)),
        )
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if b"listening on" in line:
                    break
            asyncio.run(attack(port, clients, seconds, reconnect))
        finally:
            stop_process(proc)
            _, err = proc.communicate()
            redis.stop()
    text = err.decode(errors="replace")
    print(f"server stderr: {len(text.splitlines())} lines, {len(err)} bytes, {text.count('Traceback')} tracebacks")


if __name__ == "__main__":
    main()
