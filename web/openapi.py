"""The OpenAPI 3.1 document at ``/api/openapi.json``: one operation per route of
:data:`web.routes.ROUTES`, and each job function's parameters as a JSON Schema."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from asyncjobs.client import ID_RE, QUEUE_RE
from asyncjobs.records import JobStatus
from web.responses import json_response
from web.schemas import EnqueueRequest, Schemas
from web.state import SCHEMAS

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "malformed JSON",
        401: "missing or wrong API token",
        404: "not found",
        409: "conflict",
        413: "request body too large",
        422: "invalid input",
        503: "Redis unreachable",
    }
    return {str(s): _json(_ref("Error"), text[s]) for s in (*statuses, 401, 503)}


JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": ID_RE.pattern}}


def _number(name: str, low: float, high: float, integer: bool = False) -> dict[str, Any]:
    kind = "integer" if integer else "number"
    return {"name": name, "in": "query", "required": False, "schema": {"type": kind, "minimum": low, "maximum": high}}


def _op(
    summary: str,
    responses: dict[str, Any],
    parameters: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": body}}}
    return op


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props)}


OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/jobs"): _op(
        "Enqueue a job",
        {
            "202": _json(_ref("Job"), "enqueued"),
            "200": _json(_ref("Job"), "a job with this job_id exists"),
            **_errors(400, 404, 409, 413, 422),
        },
        body=_ref("EnqueueRequest"),
    ),
    ("GET", "/api/jobs/{id}"): _op(
        "A job's record", {"200": _json(_ref("Job"), "the job"), **_errors(404, 422)}, [JOB_ID]
    ),
    ("GET", "/api/jobs/{id}/result"): _op(
        "Wait up to `timeout` seconds for a job's outcome",
        {"200": _json(_ref("Job"), "finished"), "202": _json(_ref("Job"), "not finished yet"), **_errors(404, 422)},
        [JOB_ID, _number("timeout", 0, 60)],
    ),
    ("GET", "/api/jobs/{id}/events"): _op(
        "A job's events as server-sent events, until it ends",
        {
            "200": {"description": "event stream", "content": {"text/event-stream": {"schema": {"type": "string"}}}},
            **_errors(404, 422),
        },
        [JOB_ID],
    ),
    ("POST", "/api/jobs/{id}/abort"): _op(
        "Abort a queued or running job",
        {
            "200": _json(_ref("AbortResult"), "aborted"),
            "202": _json(_ref("AbortResult"), "not stopped yet"),
            **_errors(404, 409, 422),
        },
        [JOB_ID, _number("timeout", 0, 60)],
    ),
    ("GET", "/api/queues"): _op(
        "Queue counts", {"200": _json(_obj(queues={"type": "array", "items": _ref("Queue")}), "queues"), **_errors()}
    ),
    ("GET", "/api/workers"): _op(
        "Live workers",
        {"200": _json(_obj(workers={"type": "array", "items": {"type": "object"}}), "workers"), **_errors()},
    ),
    ("GET", "/api/functions"): _op(
        "Registered job functions and their parameters",
        {"200": _json(_obj(functions={"type": "array", "items": _ref("Function")}), "functions"), **_errors()},
    ),
    ("GET", "/api/dead"): _op(
        "Dead-lettered jobs, newest first",
        {
            "200": _json(
                _obj(
                    total={"type": "integer"},
                    offset={"type": "integer"},
                    items={"type": "array", "items": {"type": "object"}},
                ),
                "a page",
            ),
            **_errors(422),
        },
        [_number("offset", 0, 1_000_000, True), _number("limit", 1, 500, True)],
    ),
    ("POST", "/api/dead/{id}/retry"): _op(
        "Enqueue a dead-lettered job again",
        {"202": _json(_ref("Job"), "enqueued again"), **_errors(404, 409, 422)},
        [JOB_ID],
    ),
    ("GET", "/api/openapi.json"): _op("This document", {"200": _json({"type": "object"}, "OpenAPI 3.1"), **_errors()}),
    ("GET", "/healthz"): _op("Liveness", {"200": _json(_obj(status={"const": "ok"}), "alive")}),
    ("GET", "/readyz"): _op(
        "Readiness (Redis reachable)",
        {"200": _json({"type": "object"}, "ready"), "503": _json({"type": "object"}, "Redis unreachable")},
    ),
    ("GET", "/metrics"): _op(
        "Prometheus metrics",
        {
            "200": {"description": "exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(),
        },
    ),
}


def _nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


def _components(schemas: Schemas) -> dict[str, Any]:
    job = _obj(
        job_id={"type": "string"},
        status={"enum": [s.value for s in JobStatus]},
        function=_nullable("string"),
        args={"type": "array"},
        kwargs={"type": "object"},
        queue=_nullable("string"),
        tries={"type": "integer"},
        enqueue_ms=_nullable("integer"),
        scheduled_ms=_nullable("integer"),
        priority=_nullable("integer"),
        start_ms=_nullable("integer"),
        finish_ms=_nullable("integer"),
        progress=_nullable("number"),
        message=_nullable("string"),
        meta=_nullable("object"),
        result={},
        error=_nullable("object"),
        links=_obj(**{k: {"type": "string"} for k in ("self", "result", "events", "abort")}),
    )
    error = _obj(
        error={**_obj(code={"type": "string"}, message={"type": "string"}, details={}), "required": ["code", "message"]}
    )
    queue = _obj(
        name={"type": "string", "pattern": QUEUE_RE.pattern},
        queued={"type": "integer"},
        deferred={"type": "integer"},
        in_progress={"type": "integer"},
        oldest_queued_ms=_nullable("integer"),
        complete={"type": "integer"},
        failed={"type": "integer"},
        aborted={"type": "integer"},
    )
    function = _obj(
        name={"type": "string"},
        doc=_nullable("string"),
        queue=_nullable("string"),
        timeout=_nullable("number"),
        retries={"type": "integer"},
        parameters={"type": "object"},
    )
    out: dict[str, Any] = {
        "Job": job,
        "Error": error,
        "Queue": queue,
        "Function": function,
        "AbortResult": _obj(job_id={"type": "string"}, aborted={"type": "boolean"}, status={"type": "string"}),
        "EnqueueRequest": _enqueue_schema(),
    }
    for fs in schemas.all():
        out[f"Function.{fs.function.name}"] = fs.json_schema
    return out


def _enqueue_schema() -> dict[str, Any]:
    schema = EnqueueRequest.model_json_schema()
    schema.pop("title", None)
    for prop in schema["properties"].values():
        prop.pop("title", None)
    return schema


def document(app: web.Application) -> dict[str, Any]:
    """The OpenAPI document for ``app``'s API routes."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        resource = route.resource
        op = OPERATIONS.get((route.method, resource.canonical)) if resource is not None else None
        if op is not None:
            paths.setdefault(resource.canonical, {})[route.method.lower()] = op  # type: ignore[union-attr]
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "asyncjobs",
            "version": "0.1.0",
            "description": 'Enqueue and follow background jobs. Errors: {"error": {code, message, details}}.',
        },
        "paths": paths,
        "components": {
            "schemas": _components(app[SCHEMAS]),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }


async def openapi_json(request: web.Request) -> web.Response:
    """``GET /api/openapi.json``."""
    return json_response(document(request.app))
