"""HTTP figures: enqueue requests/s on loopback with a real load generator (``wrk`` when it is
installed, else an aiohttp generator in a separate process), and enqueue → result latency
over HTTP (p50/p99), against an ``asyncjobs dev`` server (web + worker in one process).

    python bench/http_bench.py [--redis-url redis://127.0.0.1:6379/0] [--seconds 5] [--samples 500]

Without --redis-url the server uses the embedded in-memory broker. Not part of CI.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.server import free_port, start_server, wait_ready  # noqa: E402

BODY = '{"function": "count_words", "args": ["the quick brown fox"]}'
WRK_LUA = f'wrk.method = "POST"\nwrk.body = \'{BODY}\'\nwrk.headers["Content-Type"] = "application/json"\n'


def wrk_rate(base: str, seconds: int, connections: int) -> tuple[str, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(WRK_LUA)
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", f.name, base + "/api/jobs"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    os.unlink(f.name)
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non2xx:
        print(f"  warning: {non2xx.group(1)} non-2xx responses")
    return "wrk", float(m.group(1)) if m else 0.0


async def _aiohttp_load(url: str, seconds: float, connections: int) -> int:
    done = 0
    end = time.monotonic() + seconds
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=connections)) as s:

        async def one() -> None:
            nonlocal done
            while time.monotonic() < end:
                async with s.post(url, data=BODY, headers={"Content-Type": "application/json"}) as r:
                    await r.read()
                    done += r.status == 202

        await asyncio.gather(*[one() for _ in range(connections)])
    return done


def aiohttp_rate(base: str, seconds: int, connections: int) -> tuple[str, float]:
    code = (
        f"import asyncio, sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import http_bench as b; "
        f"print(asyncio.run(b._aiohttp_load({base + '/api/jobs'!r}, {seconds}, {connections})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return "aiohttp generator (separate process)", int(out.strip()) / seconds


async def latency(base: str, samples: int) -> list[float]:
    out = []
    async with aiohttp.ClientSession() as s:
        for _ in range(samples):
            t0 = time.perf_counter()
            async with s.post(base + "/api/jobs", data=BODY, headers={"Content-Type": "application/json"}) as r:
                job = await r.json()
            async with s.get(f"{base}/api/jobs/{job['job_id']}/result", params={"timeout": "10"}) as r:
                body = await r.json()
                assert body["result"] == 4, body
            out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--redis-url", default=None)
    p.add_argument("--seconds", type=int, default=5)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--samples", type=int, default=500)
    a = p.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server("dev", port, a.redis_url)
    try:
        asyncio.run(wait_ready(base))
        lat = asyncio.run(latency(base, 50))  # warm-up
        tool, rate = (wrk_rate if shutil.which("wrk") else aiohttp_rate)(base, a.seconds, a.connections)
        lat = asyncio.run(latency(base, a.samples))
        q = statistics.quantiles(lat, n=100)
        print(f"broker: {a.redis_url or 'memory:// (embedded)'}; server: asyncjobs dev (web + worker, one process)")
        print(f"enqueue over HTTP: {rate:,.0f} requests/s ({tool}, {a.connections} connections, {a.seconds} s)")
        print(f"enqueue -> result over HTTP ({a.samples} sequential): p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms")
    finally:
        server.terminate()
        server.wait(15)


if __name__ == "__main__":
    main()
