"""A worker process's Prometheus metrics, recorded in-process as jobs end (no Redis round trip)
and served by ``asyncjobs worker --metrics-port N`` (or ``ASYNCJOBS_METRICS_PORT``).

Each :class:`~asyncjobs.runtime.Runtime` keeps its own ``CollectorRegistry``, so many workers
can live in one process (as in tests). Queue depths and ended-job totals across all workers
are on the web app's ``/metrics`` (read from Redis at scrape time).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

logger = logging.getLogger(__name__)

DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)


class WorkerMetrics:
    """Job durations by outcome, retries and dead letters, per function and queue."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.duration = Histogram(
            "asyncjobs_job_duration_seconds",
            "time a try of a job ran in this worker, by outcome (complete, failed, retrying, aborted)",
            ["function", "queue", "outcome"],
            registry=r,
            buckets=DURATION_BUCKETS,
        )
        labels = ["function", "queue"]
        self.retries = Counter("asyncjobs_job_retries", "failed tries that were retried", labels, registry=r)
        self.dead_lettered = Counter(
            "asyncjobs_jobs_dead_lettered", "jobs this worker moved to the dead-letter set", labels, registry=r
        )
        # labelled children, cached: prometheus_client's labels() takes a lock and builds a tuple
        self._durations: dict[tuple[str, str, str], Any] = {}
        self._server: Any = None

    def observe(self, function: str, queue: str, outcome: str, seconds: float) -> None:
        """One try ended after ``seconds``."""
        child = self._durations.get((function, queue, outcome))
        if child is None:
            child = self._durations[function, queue, outcome] = self.duration.labels(function, queue, outcome)
        child.observe(seconds)

    def retried(self, function: str, queue: str) -> None:
        self.retries.labels(function, queue).inc()

    def dead_letter(self, function: str, queue: str) -> None:
        self.dead_lettered.labels(function, queue).inc()

    def serve(self, port: int) -> None:
        """Serve ``/metrics`` on ``port`` (all interfaces) from a thread, until :meth:`stop`."""
        if self._server is None:
            self._server, _ = start_http_server(port, registry=self.registry)
            logger.info("serving worker metrics on port %d (/metrics)", port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
