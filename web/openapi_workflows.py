"""The body of ``POST /api/workflows`` in the OpenAPI document, exact per node the way the
enqueue body is (:mod:`web.openapi_enqueue`): each node is a ``oneOf`` with a branch per
registered function, way of passing its parents' results (``input``) and split of its
arguments; a node that receives results (``result``: one parent, ``results``: a list) gives
arguments for the parameters after the first. What a schema cannot say about a graph is
answered with 404 (a parent that is neither a node nor an existing job) or 409 (two nodes with
one name, a cycle, a job id that is taken)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asyncjobs.registry import ID_RE
from web.openapi_enqueue import _call_shapes, _parameters
from web.schemas import FunctionSchema, Schemas

NAME_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"
WORKFLOW_ID_PATTERN = r"^[A-Za-z0-9_\-]{1,60}$"
#: the most nodes one request may create (a larger graph: the Python API, or several requests)
MAX_NODES = 1_000
_NULL = {"type": "null"}


@dataclass
class _AfterFirst:
    """A function's parameters without the first, which the parents' results fill."""

    positional: list[str]
    var_args: Any
    var_kwargs: Any


def workflow_body(schemas: Schemas, queues: Sequence[str], defs: dict[str, Any]) -> dict[str, Any]:
    """The request body schema; the functions' shared definitions are added to ``defs``."""
    branches: list[dict[str, Any]] = []
    for fs in schemas.all():
        params, required = _parameters(fs, defs)
        branches += [_node(fs, "none", a, k, queues) for a, k in _call_shapes(fs, params, required)]
        if not fs.positional:
            continue
        first = fs.positional[0]
        rest = {p: s for p, s in params.items() if p != first}
        shifted = _AfterFirst(fs.positional[1:], fs.var_args, fs.var_kwargs)
        for a, k in _call_shapes(shifted, rest, [r for r in required if r != first]):  # type: ignore[arg-type]
            branches += [_node(fs, mode, a, k, queues) for mode in ("result", "results")]
    node: dict[str, Any] = {"oneOf": branches} if branches else {"type": "object", "required": ["function"]}
    return {
        "type": "object",
        "properties": {
            "nodes": {"type": "array", "items": node, "minItems": 1, "maxItems": MAX_NODES},
            "workflow_id": {"anyOf": [{"type": "string", "pattern": WORKFLOW_ID_PATTERN}, _NULL]},
        },
        "required": ["nodes"],
        "additionalProperties": False,
    }


def _node(
    fs: FunctionSchema, mode: str, args: dict[str, Any], kwargs: dict[str, Any], queues: Sequence[str]
) -> dict[str, Any]:
    name = fs.function.name
    depends: dict[str, Any] = {"type": "array", "items": {"type": "string", "pattern": ID_RE.pattern}}
    if mode == "result":
        depends.update(minItems=1, maxItems=1)
    elif mode == "results":
        depends["minItems"] = 1
    required = ["name", "function"] + (["input", "depends_on"] if mode != "none" else [])
    if args.get("minItems"):
        required.append("args")
    if kwargs.get("required"):
        required.append("kwargs")
    queue: dict[str, Any] = {"anyOf": [{"enum": list(queues)}, _NULL]}
    if (fs.function.opts.queue or queues[0]) not in queues:
        queue = {"enum": list(queues)}
        required.append("queue")
    return {
        "title": f"{name} ({mode})",
        "type": "object",
        "properties": {
            "name": {"type": "string", "pattern": NAME_PATTERN},
            "function": {"const": name},
            "args": args,
            "kwargs": kwargs,
            "depends_on": depends,
            "input": {"const": mode},
            "policy": {"enum": ["fail_fast", "pass_errors", "ignore_failures"]},
            "queue": queue,
        },
        "required": required,
        "additionalProperties": False,
    }
