"""The body of ``POST /api/jobs`` in the OpenAPI document, exact enough that a body the schema
accepts is one the API enqueues, and a body it refuses gets a 4xx.

It is a ``oneOf`` with one branch per registered function, way of splitting the arguments
between ``args`` and ``kwargs``, and timing (due now with a ``priority``, ``defer_by`` or
``defer_until``) with each flow-control option (none, ``dedupe_for``, ``throttle``), plus
``debounce`` (due now at priority 0: it defers the job itself). Each branch fixes ``function``
with ``const`` and gives ``args`` as ``prefixItems`` and ``kwargs`` as an object, both from the
function's signature and type hints.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from asyncjobs.flow import MAX_KEY_LEN, MAX_WINDOW_S
from asyncjobs.registry import MAX_DEFER_S, NEW_ID_RE, PRIORITY_MAX
from web.schemas import FunctionSchema, Schemas

# what a job argument that is a whole number can hold (msgpack: int64 and uint64)
INT_MIN, INT_MAX = -(2**63), 2**64 - 1
REF_TEMPLATE = "#/components/schemas/{model}"


def enqueue_body(schemas: Schemas, queues: Sequence[str], defs: dict[str, Any]) -> dict[str, Any]:
    """The request body schema; the functions' shared definitions are added to ``defs``."""
    branches: list[dict[str, Any]] = []
    timings = _timings(datetime.now(UTC).year)
    for fs in schemas.all():
        params, required = _parameters(fs, defs)
        for args, kwargs in _call_shapes(fs, params, required):
            for timing in timings:
                branches.append(_branch(fs, args, kwargs, timing, queues))
    if not branches:  # no function registered: every body is refused (404 unknown function)
        return {"type": "object", "properties": {"function": {"type": "string"}}, "required": ["function"]}
    return {"oneOf": branches}


def _parameters(fs: FunctionSchema, defs: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    schema = fs.model.model_json_schema(ref_template=REF_TEMPLATE)
    for name, sub in schema.pop("$defs", {}).items():
        defs[name] = _bounded(sub)
    props = {name: _bounded(_untitled(sub)) for name, sub in schema.get("properties", {}).items()}
    return props, list(schema.get("required", []))


def _call_shapes(
    fs: FunctionSchema, params: dict[str, Any], required: list[str]
) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """For each count ``n`` of positional arguments: ``args`` holds the first ``n`` parameters,
    ``kwargs`` the others (required ones required), and nothing is given twice."""
    open_kwargs = fs.var_kwargs is not None
    for n in range(len(fs.positional) + 1):
        given = fs.positional[:n]
        args: dict[str, Any] = {"type": "array", "minItems": n}
        if given:
            args["prefixItems"] = [params[p] for p in given]
        if fs.var_args is None or n < len(fs.positional):
            args["maxItems"] = n
        rest = {p: s for p, s in params.items() if p not in given}
        kwargs: dict[str, Any] = {
            "type": "object",
            "properties": {**rest, **({p: False for p in given} if open_kwargs else {})},
            "additionalProperties": open_kwargs,
        }
        needed = [r for r in required if r not in given]
        if needed:
            kwargs["required"] = needed
        yield args, kwargs


_NULL = {"type": "null"}
_PRIORITY = {"type": "integer", "minimum": 0, "maximum": PRIORITY_MAX, "description": "0-9, higher runs first"}
_DEFER_BY = {"type": "number", "minimum": 0, "maximum": MAX_DEFER_S, "description": "seconds"}


_KEY = {"anyOf": [{"type": "string", "minLength": 1, "maxLength": MAX_KEY_LEN}, _NULL]}
_WINDOW = {"type": "number", "exclusiveMinimum": 0, "maximum": MAX_WINDOW_S, "description": "seconds"}
_NO_FLOW = {name: _NULL for name in ("dedupe_key", "dedupe_for", "debounce", "throttle", "throttle_key")}
_FLOWS: list[tuple[dict[str, Any], list[str]]] = [
    ({}, []),
    ({"dedupe_for": {**_WINDOW, "description": "seconds from this enqueue"}, "dedupe_key": _KEY}, ["dedupe_for"]),
    ({"throttle": {**_WINDOW, "description": "seconds: one job per window"}, "throttle_key": _KEY}, ["throttle"]),
]
# debounce defers the job itself: due-now timing only, at priority 0
_DEBOUNCE = (
    {
        "defer_by": _NULL,
        "defer_until": _NULL,
        "priority": {"const": 0},
        "debounce": {**_WINDOW, "description": "seconds after the last enqueue"},
        "dedupe_key": _KEY,
    },
    ["debounce"],
)


def _timings(year: int) -> list[tuple[dict[str, Any], list[str]]]:
    """(properties, required) of each timing (due now with a priority, or deferred at priority
    0) with each flow-control option or none, and debounce (a deferral of its own)."""
    return [
        ({**_NO_FLOW, **timing, **flow}, [*t_required, *f_required])
        for timing, t_required in _plain_timings(year)
        for flow, f_required in _FLOWS
    ] + [({**_NO_FLOW, **_DEBOUNCE[0]}, _DEBOUNCE[1])]


def _plain_timings(year: int) -> list[tuple[dict[str, Any], list[str]]]:
    """(properties, required) of each timing: due now with a priority, or deferred at priority 0."""
    defer_until = {
        "type": "string",
        "pattern": until_pattern(year),
        "description": "ISO 8601. The server takes any time up to 366 days ahead (a past time means now); "
        "this schema, which cannot name a bound that moves, lists UTC times up to the end of this year",
    }
    return [
        ({"defer_by": _NULL, "defer_until": _NULL, "priority": _PRIORITY}, []),
        ({"defer_by": _DEFER_BY, "defer_until": _NULL, "priority": {"const": 0}}, ["defer_by"]),
        ({"defer_by": _NULL, "defer_until": defer_until, "priority": {"const": 0}}, ["defer_until"]),
    ]


def until_pattern(year: int) -> str:
    """RFC 3339 UTC times (``2026-05-17T08:30:00Z``) from year 1000 to the end of ``year``;
    days up to 28, so every match is a real date."""
    y = f"{year:04d}"
    years = [y]
    for i in range(4):  # a smaller digit at position i, any digits after it
        low, high = (1 if i == 0 else 0), int(y[i]) - 1
        if high >= low:
            years.append(f"{y[:i]}[{low}-{high}]" + r"\d" * (3 - i))
    return rf"^({'|'.join(years)})-(0[1-9]|1[0-2])-(0[1-9]|1\d|2[0-8])T([01]\d|2[0-3]):[0-5]\d:[0-5]\dZ$"


def _branch(
    fs: FunctionSchema,
    args: dict[str, Any],
    kwargs: dict[str, Any],
    timing: tuple[dict[str, Any], list[str]],
    queues: Sequence[str],
) -> dict[str, Any]:
    name = fs.function.name
    default_queue = fs.function.opts.queue or queues[0]
    queue: dict[str, Any] = {"enum": list(queues)}
    required = ["function", *timing[1]]
    if default_queue in queues:
        queue = {"anyOf": [queue, _NULL]}
    else:  # the function's own queue is not served here: the body must name one that is
        required.append("queue")
    if args.get("minItems"):
        required.append("args")
    if kwargs.get("required"):
        required.append("kwargs")
    return {
        "title": name,
        "type": "object",
        "properties": {
            "function": {"const": name},
            "args": args,
            "kwargs": kwargs,
            "job_id": {
                "anyOf": [{"type": "string", "pattern": NEW_ID_RE.pattern}, _NULL],
                "description": "idempotency key (a tagged queue's tag is put in front)",
            },
            "queue": queue,
            **timing[0],
        },
        "required": required,
        "additionalProperties": False,
    }


def _untitled(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k != "title"}


def _bounded(schema: Any) -> Any:
    """``schema`` with every ``integer`` limited to what a job argument can hold."""
    if isinstance(schema, list):
        return [_bounded(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: _bounded(v) for k, v in schema.items()}
    if out.get("type") == "integer" or (isinstance(out.get("type"), list) and "integer" in out["type"]):
        out.setdefault("minimum", INT_MIN)
        out.setdefault("maximum", INT_MAX)
    return out
