"""Prometheus metrics for one app, in its own ``CollectorRegistry`` (so many apps can live
in one process, as in tests). Queue depths are read from Redis at scrape time."""

from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from asyncjobs.pausing import LimitState
from asyncjobs.store import JobStore

logger = logging.getLogger(__name__)


class Metrics:
    """The app's collectors."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "asyncjobs_http_requests", "HTTP requests served", ["method", "route", "status"], registry=r
        )
        self.latency = Histogram(
            "asyncjobs_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            registry=r,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
        )
        self.enqueued = Counter("asyncjobs_http_jobs_enqueued", "jobs enqueued over HTTP", ["function"], registry=r)
        self.redis_up = Gauge("asyncjobs_redis_up", "1 if Redis answered the last scrape", registry=r)
        self.queued = Gauge("asyncjobs_queue_queued", "jobs due and waiting", ["queue"], registry=r)
        self.deferred = Gauge("asyncjobs_queue_deferred", "jobs scheduled for later", ["queue"], registry=r)
        self.in_progress = Gauge("asyncjobs_queue_in_progress", "jobs running", ["queue"], registry=r)
        self.ended = EndedTotals()
        r.register(self.ended)
        self.waiting = Gauge(
            "asyncjobs_queue_waiting", "jobs held by flow control (limits, pauses)", ["queue"], registry=r
        )
        self.paused = Gauge("asyncjobs_queue_paused", "1 if the queue is paused", ["queue"], registry=r)
        fn = ["function"]
        self.limit_running = Gauge("asyncjobs_limit_running", "concurrency slots held", fn, registry=r)
        self.limit_max = Gauge("asyncjobs_limit_max_concurrency", "concurrency limit", fn, registry=r)
        self.limit_tokens = Gauge("asyncjobs_limit_rate_tokens", "rate tokens available now", fn, registry=r)
        self.limit_waiting = Gauge(
            "asyncjobs_limit_waiting", "jobs waiting on a limit or pause", ["function", "reason"], registry=r
        )
        self.dead = Gauge("asyncjobs_dead_letters", "jobs in the dead-letter set", registry=r)
        self.workers = Gauge("asyncjobs_workers", "live workers", registry=r)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        """Record one HTTP request (the route template, never the raw path)."""
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    async def refresh(self, store: JobStore) -> None:
        """Read queue depths, dead letters and workers from Redis; ``redis_up`` 0 if it fails."""
        try:
            stats = await store.queue_stats()
            total = await store.dead_count()
            workers = await store.workers()
            limits = await store.limits()
        except Exception as e:  # a scrape must answer even when Redis does not
            logger.debug("metrics: Redis unreachable (%s)", e)
            self.redis_up.set(0)
            return
        self.redis_up.set(1)
        self.ended.totals = {(s.name, o): getattr(s, o) for s in stats for o in EndedTotals.OUTCOMES}
        for s in stats:
            self.queued.labels(s.name).set(s.queued)
            self.deferred.labels(s.name).set(s.deferred)
            self.in_progress.labels(s.name).set(s.in_progress)
            self.waiting.labels(s.name).set(s.waiting)
            self.paused.labels(s.name).set(int(s.paused))
        for lim in limits:
            self._limit(lim)
        self.dead.set(total)
        self.workers.set(len(workers))

    def _limit(self, lim: LimitState) -> None:
        name = lim.function
        if lim.max_concurrency is not None:
            self.limit_running.labels(name).set(lim.running)
            self.limit_max.labels(name).set(lim.max_concurrency)
        if lim.tokens is not None:
            self.limit_tokens.labels(name).set(lim.tokens)
        waiting = {"at_concurrency": lim.at_concurrency, "rate_limited": lim.rate_limited, "paused": lim.paused_jobs}
        for reason, n in waiting.items():
            self.limit_waiting.labels(name, reason).set(n)

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class EndedTotals(Collector):
    """``asyncjobs_queue_jobs_ended_total{queue,outcome}``: a counter, though read from Redis
    (the running totals every worker adds to), so ``rate()`` works across workers and restarts
    of this app."""

    OUTCOMES = ("complete", "failed", "aborted")

    def __init__(self) -> None:
        self.totals: dict[tuple[str, str], int] = {}

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(
            "asyncjobs_queue_jobs_ended", "jobs that ended, by queue and outcome", labels=["queue", "outcome"]
        )

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        for (queue, outcome), value in sorted(self.totals.items()):
            family.add_metric([queue, outcome], value)
        yield family
