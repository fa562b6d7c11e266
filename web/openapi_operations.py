"""The operations of the OpenAPI document, keyed by method and route template, for every
route of :data:`web.routes.ROUTES` (the API's and the dashboard's), with the helpers that
build them. :mod:`web.openapi` picks the ones the app serves and adds their security."""

from __future__ import annotations

from typing import Any

from asyncjobs.registry import ID_RE

JSON = "application/json"
# each server-sent event: its name and its data (a JSON text)
EVENT_STREAM = {
    "text/event-stream": {
        "schema": {
            "type": "object",
            "properties": {"event": {"type": "string"}, "data": {"type": "string", "contentMediaType": JSON}},
            "required": ["data"],
        }
    }
}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_of(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def errors(*statuses: int) -> dict[str, Any]:
    text = {
        400: "malformed JSON or query parameter",
        401: "missing or wrong API token",
        403: "cross-site request, or a dashboard action without its header",
        404: "not found",
        409: "conflict",
        413: "request body too large",
        415: "not JSON: a state-changing request carries a JSON body or, without one, its header",
        422: "invalid input",
        503: "Redis unreachable",
    }
    return {str(s): json_of(ref("Error"), text[s]) for s in (*statuses, 401, 503)}


JOB_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": ID_RE.pattern}}
QUEUE_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
FUNCTION_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
DASHBOARD_HEADER = {
    "name": "X-Asyncjobs-Request",
    "in": "header",
    "required": True,
    "description": "proves the request comes from a page of this site",
    "schema": {"const": "1"},
}


# the dashboard reads query numbers of at most 15 digits
MAX_QUERY_NUMBER = 10**15 - 1


def number(name: str, low: float, high: float | None, integer: bool = False) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "integer" if integer else "number", "minimum": low}
    if high is not None:
        schema["maximum"] = high
    return {"name": name, "in": "query", "required": False, "schema": schema}


def _or_empty(param: dict[str, Any], description: str) -> dict[str, Any]:
    """A dashboard query number: empty (``?cursor=``) stands for its default."""
    return {
        **param,
        "description": f"{description}; empty for the default",
        "schema": {"anyOf": [param["schema"], {"const": ""}]},
    }


def text(name: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "string", **schema}}


def operation(
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


def obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props)}


def nullable(kind: str) -> dict[str, Any]:
    return {"type": [kind, "null"]}


WORKFLOW_STATUS = obj(
    workflow_id={"type": "string"},
    state={"type": "string"},
    total={"type": "integer"},
    ended={"type": "integer"},
    failed={"type": "integer"},
    failed_node=nullable("string"),
    aborted={"type": "boolean"},
    created_ms=nullable("integer"),
    ended_ms=nullable("integer"),
    nodes={"type": "array", "items": {"type": "object"}},
    links={"type": "object"},
)

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/jobs"): operation(
        "Enqueue a job",
        {
            "202": json_of(ref("Job"), "enqueued"),
            "200": json_of(
                {
                    "allOf": [
                        ref("Job"),
                        {
                            "type": "object",
                            "properties": {
                                "deduplicated": {"const": True},
                                "debounced": {"const": True},
                                "throttled": {"const": True},
                            },
                        },
                    ]
                },
                "a job with this job_id exists, or the job holding the window of dedupe_for (deduplicated: "
                "this job instead of a new one), debounce (debounced: it got the new arguments and start) or "
                "throttle (throttled: the enqueue was dropped; this job holds the window)",
            ),
            **errors(400, 404, 409, 413, 422),
        },
        body=ref("EnqueueRequest"),
    ),
    ("GET", "/api/jobs/{id}"): operation(
        "A job's record", {"200": json_of(ref("Job"), "the job"), **errors(404, 422)}, [JOB_ID]
    ),
    ("GET", "/api/jobs/{id}/result"): operation(
        "Wait up to `timeout` seconds for a job's outcome",
        {"200": json_of(ref("Job"), "finished"), "202": json_of(ref("Job"), "not finished yet"), **errors(404, 422)},
        [JOB_ID, number("timeout", 0, 60)],
    ),
    ("GET", "/api/jobs/{id}/events"): operation(
        "A job's events as server-sent events, until it ends",
        {
            "200": {"description": "event stream", "content": EVENT_STREAM},
            **errors(404, 422),
        },
        [JOB_ID],
    ),
    ("POST", "/api/jobs/{id}/abort"): operation(
        "Abort a queued or running job",
        {
            "200": json_of(ref("AbortResult"), "aborted"),
            "202": json_of(ref("AbortResult"), "not stopped yet"),
            **errors(404, 409, 422),
        },
        [JOB_ID, number("timeout", 0, 60)],
    ),
    ("POST", "/api/workflows"): operation(
        "Create a workflow: a graph of jobs, each queued when its parents ended",
        {
            "202": json_of(
                obj(workflow_id={"type": "string"}, nodes={"type": "object"}, links={"type": "object"}), "created"
            ),
            **errors(400, 404, 409, 413, 422),
        },
        body=ref("WorkflowRequest"),
    ),
    ("GET", "/api/workflows/{id}"): operation(
        "A workflow's state and every node's",
        {"200": json_of(WORKFLOW_STATUS, "the workflow"), **errors(404, 422)},
        [{**JOB_ID, "description": "the workflow id"}],
    ),
    ("GET", "/api/queues"): operation(
        "Queue counts", {"200": json_of(obj(queues={"type": "array", "items": ref("Queue")}), "queues"), **errors()}
    ),
    ("POST", "/api/queues/{name}/pause"): operation(
        "Pause a queue: workers stop starting its jobs (they stay queued)",
        {"200": json_of(obj(queue={"type": "string"}, paused={"type": "boolean"}), "paused"), **errors(404, 422)},
        [QUEUE_NAME],
    ),
    ("POST", "/api/queues/{name}/resume"): operation(
        "Resume a paused queue: workers start its jobs at once",
        {"200": json_of(obj(queue={"type": "string"}, paused={"type": "boolean"}), "resumed"), **errors(404, 422)},
        [QUEUE_NAME],
    ),
    ("GET", "/api/limits"): operation(
        "Rate and concurrency limits of the functions, their use now, and what is paused",
        {
            "200": json_of(
                obj(
                    limits={"type": "array", "items": ref("Limit")},
                    paused=obj(
                        queues={"type": "array", "items": {"type": "string"}},
                        functions={"type": "array", "items": {"type": "string"}},
                    ),
                ),
                "limits",
            ),
            **errors(),
        },
    ),
    ("POST", "/api/functions/{name}/pause"): operation(
        "Pause a function: its jobs wait in their queues until resumed",
        {"200": json_of(ref("FunctionPause"), "paused"), **errors(404, 422)},
        [FUNCTION_NAME],
    ),
    ("POST", "/api/functions/{name}/resume"): operation(
        "Resume a paused function: its waiting jobs are due again at once",
        {"200": json_of(ref("FunctionPause"), "resumed"), **errors(404, 422)},
        [FUNCTION_NAME],
    ),
    ("GET", "/api/workers"): operation(
        "Live workers",
        {"200": json_of(obj(workers={"type": "array", "items": {"type": "object"}}), "workers"), **errors()},
    ),
    ("GET", "/api/functions"): operation(
        "Registered job functions and their parameters",
        {"200": json_of(obj(functions={"type": "array", "items": ref("Function")}), "functions"), **errors()},
    ),
    ("GET", "/api/dead"): operation(
        "Dead-lettered jobs, newest first",
        {
            "200": json_of(
                obj(
                    total={"type": "integer"},
                    offset={"type": "integer"},
                    items={"type": "array", "items": {"type": "object"}},
                ),
                "a page",
            ),
            **errors(422),
        },
        [number("offset", 0, 1_000_000, True), number("limit", 1, 500, True)],
    ),
    ("POST", "/api/dead/{id}/retry"): operation(
        "Enqueue a dead-lettered job again",
        {"202": json_of(ref("Job"), "enqueued again"), **errors(404, 409, 422)},
        [JOB_ID],
    ),
    ("GET", "/api/openapi.json"): operation(
        "This document", {"200": json_of({"type": "object"}, "OpenAPI 3.1"), **errors()}
    ),
    ("GET", "/healthz"): operation("Liveness", {"200": json_of(obj(status={"const": "ok"}), "alive")}),
    ("GET", "/readyz"): operation(
        "Readiness (Redis reachable)",
        {"200": json_of({"type": "object"}, "ready"), "503": json_of({"type": "object"}, "Redis unreachable")},
    ),
    ("GET", "/metrics"): operation(
        "Prometheus metrics",
        {
            "200": {"description": "exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **errors(),
        },
    ),
}
DASHBOARD_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/"): operation("The dashboard page", {"200": {"description": "HTML", "content": {"text/html": {}}}}),
    ("GET", "/dashboard/static/{filename}"): operation(
        "The dashboard's scripts, styles and their licences",
        {
            "200": {"description": "the file", "content": {"*/*": {}}},
            "403": json_of(ref("Error"), "outside the directory"),
            "404": {"description": "no such file (an empty body)"},
        },
    ),
    ("GET", "/api/dashboard/overview"): operation(
        "Counts per queue, workers online, dead letters",
        {
            "200": json_of(
                obj(
                    queues={"type": "array", "items": {"type": "object"}},
                    workers_online={"type": "integer"},
                    dead={"type": "integer"},
                    now_ms={"type": "integer"},
                ),
                "overview",
            ),
            **errors(),
        },
    ),
    ("GET", "/api/dashboard/jobs"): operation(
        "A page of jobs, waiting ones first, filtered by state, queue, function and text",
        {
            "200": json_of(
                obj(
                    jobs={"type": "array", "items": {"type": "object"}},
                    total={"type": "integer"},
                    scanned={"type": "integer"},
                    next_cursor=nullable("integer"),
                    filtered={"type": "boolean"},
                ),
                "a page",
            ),
            **errors(400),
        },
        [
            text("state"),
            text("queue"),
            text("function"),
            text("q", description="text to look for"),
            _or_empty(number("cursor", 0, MAX_QUERY_NUMBER, True), "where the page starts (from next_cursor)"),
            _or_empty(number("limit", 0, MAX_QUERY_NUMBER, True), "page size, taken as 1 to 200"),
        ],
    ),
    ("GET", "/api/dashboard/cron"): operation(
        "Periodic jobs with their next and last runs",
        {"200": json_of(obj(cron={"type": "array", "items": {"type": "object"}}), "cron jobs"), **errors()},
    ),
    ("POST", "/api/dashboard/ticket"): operation(
        "A one-minute ticket to open /dashboard/events (empty without an API token)",
        {
            "200": json_of(obj(ticket={"type": "string"}, expires_in={"type": "integer"}), "ticket"),
            **errors(403),
        },
        [DASHBOARD_HEADER],
    ),
    ("POST", "/api/dashboard/dead/retry-all"): operation(
        "Enqueue every dead-lettered job again",
        {
            "200": json_of(
                obj(retried={"type": "integer"}, failed={"type": "array", "items": {"type": "object"}}), "retried"
            ),
            **errors(403),
        },
        [DASHBOARD_HEADER],
    ),
    ("POST", "/api/dashboard/dead/purge"): operation(
        "Delete every dead letter",
        {"200": json_of(obj(purged={"type": "integer"}), "purged"), **errors(403)},
        [DASHBOARD_HEADER],
    ),
    ("GET", "/dashboard/events"): operation(
        "Live events for the dashboard: every job (a tick a second) or one job's",
        {"200": {"description": "event stream", "content": EVENT_STREAM}, **errors(422)},
        [text("job", pattern=ID_RE.pattern, description="one job's events only")],
    ),
}


def _state_changing(operations: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Every POST may answer 415; one without a body carries the header that proves it is not a
    cross-site form (``Authorization`` does too, when a token is configured)."""
    for (method, _), op in operations.items():
        if method != "POST":
            continue
        op["responses"].setdefault("415", errors(415)["415"])
        params = op.setdefault("parameters", [])
        if "requestBody" not in op and DASHBOARD_HEADER not in params:
            params.append(DASHBOARD_HEADER)


OPERATIONS.update(DASHBOARD_OPERATIONS)  # one table, as the routes are
_state_changing(OPERATIONS)
