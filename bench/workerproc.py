"""One worker process: ``python -m bench.workerproc ENGINE URL CONCURRENCY POLL_DELAY BURST [QUEUES]``.

ENGINE is ``ours`` (asyncjobs.Worker) or ``arq`` (plain arq.worker.Worker), each logging as its
own CLI sets it up. In burst mode it prints one JSON line when the queue is empty: wall and
CPU seconds of the run (after imports and set-up) and peak RSS. QUEUES (``ours`` only): the
queues to serve, comma-separated (default: the default queue).
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import resource
import sys
import time

import orjson


def build(engine: str, url: str, concurrency: int, poll_delay: float, burst: bool, queues: str = "") -> object:
    if engine == "arq":
        from arq.logs import default_log_config
        from arq.worker import Worker

        from bench.jobs import arq_settings

        logging.config.dictConfig(default_log_config(verbose=False))
        return Worker(**arq_settings(url, concurrency, poll_delay), burst=burst)
    from asyncjobs.connections import create_broker
    from asyncjobs.runner import build_worker
    from bench.jobs import ours_settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides: dict[str, object] = {"burst": burst, **({"queues": queues.split(",")} if queues else {})}
    return build_worker(ours_settings(url, concurrency), overrides, create_broker(url))


def main() -> None:
    engine, url, concurrency, poll_delay, burst = sys.argv[1:6]
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    worker = build(engine, url, int(concurrency), float(poll_delay), burst == "1", *sys.argv[6:7])
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    loop.run_until_complete(worker.async_run())  # type: ignore[attr-defined]
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    loop.run_until_complete(worker.close())  # type: ignore[attr-defined]
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    sys.stdout.buffer.write(orjson.dumps({"wall": wall, "cpu": cpu, "maxrss_kb": r1.ru_maxrss}) + b"\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
