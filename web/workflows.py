"""Handlers for workflows: ``POST /api/workflows`` (a JSON graph, checked against the registered
functions before anything is written) and ``GET /api/workflows/{id}`` (every node's state)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from asyncjobs import workflows
from asyncjobs.canvas import POLICIES, Node, Part, checked_arguments
from asyncjobs.connections import new_job_id
from asyncjobs.errors import InvalidWorkflow, JobNotFound, UnknownFunction
from asyncjobs.registry import ID_RE, QUEUE_RE
from web import params
from web.openapi_workflows import MAX_NODES, NAME_PATTERN, WORKFLOW_ID_PATTERN
from web.responses import ApiError, json_response
from web.schemas import pydantic_errors
from web.state import CLIENT, REGISTRY, SETTINGS


class NodeRequest(BaseModel):
    """One node of ``POST /api/workflows``."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(pattern=NAME_PATTERN, description="the node's name in this graph")]
    function: Annotated[str, Field(min_length=1, max_length=200)]
    args: list[Any] = Field(default_factory=list)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    depends_on: list[Annotated[str, Field(pattern=ID_RE.pattern)]] = Field(
        default_factory=list, description="names of nodes of this graph, or ids of existing jobs"
    )
    input: Literal["none", "result", "results"] = Field(
        "none", description="pass nothing, the one parent's result, or the list of the parents' results"
    )
    policy: Literal["fail_fast", "pass_errors", "ignore_failures"] = "fail_fast"
    queue: Annotated[str | None, Field(pattern=QUEUE_RE.pattern)] = None


class WorkflowRequest(BaseModel):
    """The body of ``POST /api/workflows``."""

    model_config = ConfigDict(extra="forbid")

    nodes: Annotated[list[NodeRequest], Field(min_length=1, max_length=MAX_NODES)]
    workflow_id: Annotated[str | None, Field(pattern=WORKFLOW_ID_PATTERN)] = None


def links(workflow_id: str) -> dict[str, str]:
    return {"self": f"/api/workflows/{workflow_id}"}


async def create(request: web.Request) -> web.Response:
    """``POST /api/workflows``: 202 with the workflow's id and its nodes' job ids; 422 naming
    the node (and parameter) at fault; 409 if the workflow id is taken."""
    req = _parse(await params.json_body(request))
    wf_id = req.workflow_id or new_job_id()
    nodes, part = _nodes(request, req, wf_id)
    client = request.app[CLIENT]
    if await client.store.workflow_exists(wf_id):
        raise ApiError(409, "conflict", f"workflow {wf_id} exists; pick another workflow_id", {"workflow_id": wf_id})
    try:
        await workflows.start_graph(client, wf_id, nodes, part)
    except InvalidWorkflow as e:  # the graph itself: a cycle, a job id taken, an unknown parent
        status, code = (404, "job_not_found") if "does not exist" in str(e) else (409, "conflict")
        node = e.node.removeprefix(f"{wf_id}.") if e.node else None
        raise ApiError(status, code, str(e), {"node": node}) from None
    body = {"workflow_id": wf_id, "nodes": {r.name: n.id for r, n in zip(req.nodes, nodes, strict=True)}}
    body["links"] = links(wf_id)
    return json_response(body, status=202, headers={"Location": links(wf_id)["self"]})


def _parse(body: Any) -> WorkflowRequest:
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_request", 'the body must be a JSON object like {"nodes": [...]}')
    try:
        return WorkflowRequest.model_validate(body)
    except ValidationError as e:
        errors = pydantic_errors(e)
        where = ".".join(str(p) for p in errors[0]["loc"]) or "body"
        raise ApiError(422, "invalid_request", f"{where}: {errors[0]['msg']}", errors) from None


def _nodes(request: web.Request, req: WorkflowRequest, wf_id: str) -> tuple[list[Node], Part]:
    registry, settings = request.app[REGISTRY], request.app[SETTINGS]
    ids = {n.name: f"{wf_id}.{n.name}" for n in req.nodes}
    if len(ids) < len(req.nodes):
        raise ApiError(409, "conflict", "two nodes have the same name: give each its own", {"loc": ["nodes"]})
    nodes: list[Node] = []
    for i, n in enumerate(req.nodes):
        try:
            fn = registry.get(n.function)
        except UnknownFunction as e:
            raise ApiError(
                422, "invalid_workflow", f"node {n.name}: {e}", {"node": n.name, "loc": ["function"]}
            ) from None
        queue = n.queue or fn.opts.queue or settings.queues[0]
        if queue not in settings.queues:
            raise ApiError(
                422, "invalid_workflow", f"node {n.name}: queue {queue!r} is not served here", {"node": n.name}
            )
        parents = [ids.get(p, p) for p in dict.fromkeys(n.depends_on)]
        if n.input != "none" and (not parents or (n.input == "result" and len(parents) != 1)):
            message = f"node {n.name}: input {n.input!r} needs {'one parent' if n.input == 'result' else 'parents'}"
            raise ApiError(422, "invalid_workflow", message, {"node": n.name, "loc": ["input"]})
        placed = fn.options(queue=queue) if queue != (fn.opts.queue or settings.queues[0]) else fn
        node = Node(
            ids[n.name], placed, n.args, n.kwargs, parents=parents, policy=POLICIES[n.policy], label=f"node {n.name}"
        )
        if n.input != "none":
            node.inputs, node.as_list = parents[:], n.input == "results"
        try:
            node.args, node.kwargs = checked_arguments(node)
        except InvalidWorkflow as e:
            raise _invalid(e, n.name, i) from None
        nodes.append(node)
    parents_of = {p for n in nodes for p in n.parents}
    sinks = [n.id for n in nodes if n.id not in parents_of]
    return nodes, Part(sinks, len(sinks) > 1)


def _invalid(e: InvalidWorkflow, name: str, index: int) -> ApiError:
    """422 naming the node (its name in the request) and, for arguments, the parameter."""
    return ApiError(422, "invalid_workflow", str(e), {"node": name, "index": index, "errors": e.errors})


async def get_workflow(request: web.Request) -> web.Response:
    """``GET /api/workflows/{id}``: the workflow's state and every node's (404 if unknown)."""
    wf_id = request.match_info["id"]
    if not re.fullmatch(ID_RE.pattern, wf_id):
        raise ApiError(422, "invalid_request", "the workflow id is not valid", {"loc": ["id"]})
    try:
        status = await request.app[CLIENT].workflow(wf_id).status()
    except JobNotFound:
        raise ApiError(404, "workflow_not_found", f"workflow {wf_id} not found", {"workflow_id": wf_id}) from None
    return json_response({**status.as_dict(), "links": links(wf_id)})
