"""The OpenAPI 3.1 document at ``/api/openapi.json``: one operation per route registered on
the app (the API of :data:`web.routes.ROUTES` and the dashboard's), the body of
``POST /api/jobs`` per registered function (:mod:`web.openapi_enqueue`), and the security the
app enforces: bearer auth only when ``ASYNCJOBS_API_TOKEN`` is set, never on public paths."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from aiohttp import web

from asyncjobs.client import QUEUE_RE
from asyncjobs.records import JobStatus
from web.middlewares import is_public
from web.openapi_enqueue import enqueue_body
from web.openapi_operations import DASHBOARD_HEADER, OPERATIONS, json_of, nullable, obj, ref
from web.openapi_workflows import workflow_body
from web.responses import json_response
from web.schemas import Schemas
from web.state import SCHEMAS, SETTINGS
from web.tickets import STREAM_PATH


def _components(schemas: Schemas, queues: tuple[str, ...]) -> dict[str, Any]:
    job = obj(
        job_id={"type": "string"},
        status={"enum": [s.value for s in JobStatus]},
        function=nullable("string"),
        args={"type": "array"},
        kwargs={"type": "object"},
        queue=nullable("string"),
        tries={"type": "integer"},
        enqueue_ms=nullable("integer"),
        scheduled_ms=nullable("integer"),
        priority=nullable("integer"),
        start_ms=nullable("integer"),
        finish_ms=nullable("integer"),
        progress=nullable("number"),
        message=nullable("string"),
        meta=nullable("object"),
        result={},
        error=nullable("object"),
        waiting={"enum": ["rate_limited", "at_concurrency", "paused", None]},
        workflow=nullable("string"),
        links=obj(**{k: {"type": "string"} for k in ("self", "result", "events", "abort")}),
    )
    error = obj(
        error={**obj(code={"type": "string"}, message={"type": "string"}, details={}), "required": ["code", "message"]}
    )
    queue = obj(
        name={"type": "string", "pattern": QUEUE_RE.pattern},
        queued={"type": "integer"},
        deferred={"type": "integer"},
        in_progress={"type": "integer"},
        oldest_queued_ms=nullable("integer"),
        complete={"type": "integer"},
        failed={"type": "integer"},
        aborted={"type": "integer"},
        waiting={"type": "integer"},
        paused={"type": "boolean"},
    )
    limit = obj(
        function={"type": "string"},
        queue=nullable("string"),
        rate_limit=nullable("string"),
        burst=nullable("integer"),
        max_concurrency=nullable("integer"),
        rate_keyed={"type": "boolean"},
        concurrency_keyed={"type": "boolean"},
        running={"type": "integer"},
        at_concurrency={"type": "integer"},
        tokens=nullable("number"),
        rate_limited={"type": "integer"},
        paused={"type": "boolean"},
        paused_jobs={"type": "integer"},
    )
    function = obj(
        name={"type": "string"},
        doc=nullable("string"),
        queue=nullable("string"),
        timeout=nullable("number"),
        retries={"type": "integer"},
        parameters={"type": "object"},
    )
    out: dict[str, Any] = {
        "Job": job,
        "Error": error,
        "Queue": queue,
        "Function": function,
        "Limit": limit,
        "FunctionPause": obj(function={"type": "string"}, paused={"type": "boolean"}, resumed_jobs={"type": "integer"}),
        "AbortResult": obj(job_id={"type": "string"}, aborted={"type": "boolean"}, status={"type": "string"}),
    }
    for fs in schemas.all():
        out[f"Function.{fs.function.name}"] = fs.json_schema
    out["EnqueueRequest"] = enqueue_body(schemas, queues, out)
    out["WorkflowRequest"] = workflow_body(schemas, queues, out)
    return out


def _paths(app: web.Application, token: bool) -> dict[str, dict[str, Any]]:
    """An operation for every route of ``app`` (HEAD as its GET without a body), with the
    security the auth middleware applies to its path."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        resource = route.resource
        if resource is None:
            continue
        path, static = resource.canonical, isinstance(resource, web.StaticResource)
        if static:
            path += "/{filename}"
        method = "GET" if route.method == "HEAD" else route.method
        op = OPERATIONS.get((method, path))
        if op is None:
            continue
        op = copy.deepcopy(op)
        if isinstance(resource, web.StaticResource):
            op["parameters"] = [_static_file(resource)]
        _name_enum(op, path, app)
        if route.method == "HEAD":
            op = _head(op)
        _secure(op, path, token)
        if token and not path.startswith("/api/dashboard/"):
            _header_or_token(op)
        paths.setdefault(path, {})[route.method.lower()] = op
    return paths


def _name_enum(op: dict[str, Any], path: str, app: web.Application) -> None:
    """The ``{name}`` of a queue or function path: one of the deployment's queues or functions
    (another name answers 404, a malformed queue name 422)."""
    if path.startswith("/api/queues/{name}"):
        names = sorted(app[SETTINGS].queues)
    elif path.startswith("/api/functions/{name}"):
        names = sorted(fs.function.name for fs in app[SCHEMAS].all())
    else:
        return
    named = {"name": "name", "in": "path", "required": True, "schema": {"enum": names}}
    op["parameters"] = [named if p.get("name") == "name" else p for p in op.get("parameters", [])]


def _header_or_token(op: dict[str, Any]) -> None:
    """With a token configured, a body-less API request proves itself by its ``Authorization``
    header as well: the ``X-Asyncjobs-Request`` header is optional there (the dashboard's own
    endpoints still ask for it)."""
    op["parameters"] = [
        {**p, "required": False, "description": p["description"] + " (or the Authorization header)"}
        if p is DASHBOARD_HEADER or p == DASHBOARD_HEADER
        else p
        for p in op.get("parameters", [])
    ]


def _static_file(resource: web.StaticResource) -> dict[str, Any]:
    directory = Path(resource.get_info()["directory"])
    files = sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file())
    return {"name": "filename", "in": "path", "required": True, "schema": {"enum": files}}


def _head(get: dict[str, Any]) -> dict[str, Any]:
    responses = {status: {"description": r["description"]} for status, r in get["responses"].items()}
    return {**get, "summary": f"{get['summary']} (headers only)", "responses": responses}


def _secure(op: dict[str, Any], path: str, token: bool) -> None:
    """Public paths and token-less apps take no credentials (and never answer 401); the
    dashboard's event stream takes a bearer token or a ticket (the auth middleware's rule)."""
    if token and path == STREAM_PATH:
        op["security"] = [{"bearer": []}, {"ticket": []}]
        op["responses"]["401"] = json_of(ref("Error"), "missing or wrong token or ticket")
        return
    if not token or is_public(path):
        op["responses"].pop("401", None)
        if token:
            op["security"] = []


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document for ``app``'s routes."""
    settings = app[SETTINGS]
    token = bool(settings.api_token)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "asyncjobs",
            "version": "0.1.0",
            "description": 'Enqueue and follow background jobs. Errors: {"error": {code, message, details}}.',
        },
        "paths": _paths(app, token),
        "components": {"schemas": _components(app[SCHEMAS], settings.queues)},
    }
    if token:
        doc["components"]["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "the value of ASYNCJOBS_API_TOKEN"},
            "ticket": {
                "type": "apiKey",
                "in": "query",
                "name": "ticket",
                "description": f"from POST /api/dashboard/ticket; only for {STREAM_PATH}",
            },
        }
        doc["security"] = [{"bearer": []}]
    return doc


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /api/openapi.json``."""
    return json_response(document(request.app))
