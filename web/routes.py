"""The app's one route table: the API, the dashboard's data endpoints and event stream, the
dashboard page and its assets. Every route has its operation in the OpenAPI document
(:mod:`web.openapi_operations`)."""

from __future__ import annotations

from aiohttp import web

from web import admin, dashboard, health, jobs, limits, openapi, sse, workflows
from web.tickets import STREAM_PATH

# a job id or queue name may hold a hash tag (``{high}``), which aiohttp's default pattern for a
# path parameter refuses: those parameters take any character but ``/``
ROUTES = [
    web.post("/api/jobs", jobs.enqueue),
    web.get("/api/jobs/{id:[^/]+}", jobs.get_job, allow_head=False),
    web.get("/api/jobs/{id:[^/]+}/result", jobs.get_result, allow_head=False),
    web.get("/api/jobs/{id:[^/]+}/events", sse.job_events, allow_head=False),
    web.post("/api/jobs/{id:[^/]+}/abort", jobs.abort),
    web.post("/api/workflows", workflows.create),
    web.get("/api/workflows/{id}", workflows.get_workflow, allow_head=False),
    web.get("/api/queues", admin.list_queues, allow_head=False),
    web.post("/api/queues/{name:[^/]+}/pause", limits.pause_queue),
    web.post("/api/queues/{name:[^/]+}/resume", limits.resume_queue),
    web.get("/api/limits", limits.list_limits, allow_head=False),
    web.post("/api/functions/{name}/pause", limits.pause_function),
    web.post("/api/functions/{name}/resume", limits.resume_function),
    web.get("/api/workers", admin.list_workers, allow_head=False),
    web.get("/api/functions", admin.list_functions, allow_head=False),
    web.get("/api/dead", admin.list_dead, allow_head=False),
    web.post("/api/dead/{id:[^/]+}/retry", admin.retry_dead),
    web.get("/api/openapi.json", openapi.openapi_json, allow_head=False),
    web.get("/healthz", health.healthz, allow_head=False),
    web.get("/readyz", health.readyz, allow_head=False),
    web.get("/metrics", health.metrics, allow_head=False),
    web.get("/api/dashboard/overview", dashboard.overview),
    web.get("/api/dashboard/jobs", dashboard.jobs),
    web.get("/api/dashboard/cron", dashboard.cron),
    web.post("/api/dashboard/ticket", dashboard.ticket),
    web.post("/api/dashboard/dead/retry-all", dashboard.retry_all),
    web.post("/api/dashboard/dead/purge", dashboard.purge),
    web.get(STREAM_PATH, dashboard.stream),
    web.get("/", dashboard.index),
    web.static("/dashboard/static", dashboard.STATIC, append_version=True),
]
