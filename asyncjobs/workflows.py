"""Workflows in Redis: creating a compiled canvas (:mod:`asyncjobs.canvas`) in batched script
calls, and the :class:`Workflow` handle (result, status, abort, events). What a node receives
when it starts is :mod:`asyncjobs.workflow_inputs`.

The fan-in itself runs in Lua, in the call that ends each job (:data:`LUA_ON_END`, see
:mod:`asyncjobs.workflow_scripts`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arq.utils import timestamp_ms

from asyncjobs import events, keys, workflow_scripts
from asyncjobs.canvas import INPUTS_KWARG, Canvas, Graph, Node, Part, check_acyclic, checked_arguments, inputs_marker
from asyncjobs.cluster import is_cluster
from asyncjobs.connections import new_job_id
from asyncjobs.errors import ConfigError, InvalidWorkflow, JobAborted, JobFailed
from asyncjobs.registry import check_new_job_id
from asyncjobs.serialization import RemoteError, deserialize

if TYPE_CHECKING:
    from asyncjobs.client import Client, JobHandle
    from asyncjobs.registry import JobFunction

LUA_ON_END = workflow_scripts.LUA_ON_END
#: nodes written per script call when a workflow is created (all calls share one round trip)
BATCH = 500
DEFAULT_EXPIRES_S = 86400.0
DEFAULT_KEEP_S = 3600.0  # arq's and the settings' default result retention
TERMINAL = frozenset({"complete", "failed", "aborted", "cancelled", "skipped"})


# --- creation -------------------------------------------------------------------------------
async def create(
    client: Client, canvas: Canvas, *, workflow_id: str | None = None, expires: float | None = None
) -> Workflow:
    """Check, write and start ``canvas`` as one workflow (see :meth:`Client.enqueue_workflow`)."""
    wf_id = check_new_job_id(workflow_id) if workflow_id else new_job_id()
    graph = Graph(wf_id)
    part = graph.build(canvas)
    return await start_graph(client, wf_id, graph.nodes, part, expires)


async def start_graph(
    client: Client, wf_id: str, nodes: list[Node], part: Part, expires: float | None = None
) -> Workflow:
    """Write ``nodes`` (checked, arguments encoded) in batches, then start the workflow: its
    roots are queued, and edges from jobs outside it are registered, in one atomic call."""
    if is_cluster(client.redis):
        raise ConfigError(
            "workflows are not available in cluster mode: a workflow's nodes would span hash slots", key="workflow"
        )
    _check_ids(nodes)
    check_acyclic(nodes)
    ttl = int((expires or client.job_expiry or DEFAULT_EXPIRES_S) * 1000)
    outside = await _outside_parents(client, nodes, {n.id for n in nodes})
    r = client.redis
    children: dict[str, list[str]] = {}
    for n in nodes:
        for p in n.parents:
            children.setdefault(p, []).append(n.id)
    outputs = set(part.results)
    batches = [_node_argv(client, n, children.get(n.id, []), n.id in outputs) for n in nodes]
    nodes_script = r.register_script(workflow_scripts.NODES)
    start_script = r.register_script(workflow_scripts.START)
    async with r.pipeline(transaction=False) as pipe:
        for i in range(0, len(batches), BATCH):
            argv = [wf_id, ttl, *(x for b in batches[i : i + BATCH] for x in b)]
            await nodes_script(args=argv, client=pipe)
        replies = await pipe.execute(raise_on_error=False)
    taken = next((rep for rep in replies if isinstance(rep, Exception) or rep), None)
    if taken is not None:
        await _discard(client, wf_id, nodes)
        if isinstance(taken, Exception):
            raise taken
        node = taken[1].decode()
        raise InvalidWorkflow(f"job id {node} is taken: give the node another job_id", node=node)
    roots = [n.id for n in nodes if not n.parents]
    keep_ms = min(ttl, int(1000 * max(n.function.opts.keep_result or DEFAULT_KEEP_S for n in nodes)))
    while True:
        edges = [x for (p, c), o in outside.items() for x in (p, c, o)]
        kind = "list" if part.as_list else "one"
        head: list[Any] = [wf_id, ttl, len(nodes), timestamp_ms(), kind, keep_ms, len(roots)]
        reply = await start_script(args=[*head, *roots, *edges])
        if not reply:
            return Workflow(client, wf_id)
        ended = reply[1].decode()  # an outside parent ended meanwhile: read how, and start again
        outcome = await _outcome_of(client, ended)
        for p, c in outside:
            if p == ended:
                outside[(p, c)] = outcome or "complete"


def _check_ids(nodes: Sequence[Node]) -> None:
    """One job id per node; no flow control (dedupe, debounce, throttle: a node is queued by
    its parents' ends, never through the enqueue those options act on)."""
    seen: set[str] = set()
    for n in nodes:
        if n.id in seen:
            raise InvalidWorkflow(f"two nodes have job id {n.id}: give each its own job_id", node=n.id)
        if n.function.enqueue_options.flow is not None:
            raise InvalidWorkflow(
                f"{n.label or n.id}: dedupe, debounce and throttle do not apply to a workflow node; drop them",
                node=n.id,
            )
        seen.add(n.id)


def _node_argv(client: Client, n: Node, children: list[str], output: bool) -> list[Any]:
    kwargs = {**n.kwargs, INPUTS_KWARG: inputs_marker(n)} if n.inputs else n.kwargs
    o = n.function.enqueue_options
    queue = o.queue or n.function.opts.queue or client.default_queue
    enc = client.redis.encode_enqueue(n.function.name, n.args, kwargs, o, job_id=n.id, queue_key=keys.queue(queue))
    defer_ms = max(enc.run_at_ms - enc.now_ms, 0) if (o.defer_by or o.defer_until) else 0
    meta = (keys.queue(queue), enc.argv[4], defer_ms, o.priority, len(n.parents), n.policy, ",".join(children))
    return [n.id, enc.argv[1], "\t".join(map(str, (*meta, "1" if output else "", n.function.name)))]


async def _outside_parents(client: Client, nodes: Sequence[Node], inside: set[str]) -> dict[tuple[str, str], str]:
    """(parent, child) -> outcome ('' while it runs) for parents that are jobs outside the
    workflow; :class:`InvalidWorkflow` for a parent that does not exist."""
    edges = {(p, n.id): "" for n in nodes for p in n.parents if p not in inside}
    for parent in {p for p, _ in edges}:
        outcome = await _outcome_of(client, parent)
        if outcome is None:
            child = next(c for p, c in edges if p == parent)
            raise InvalidWorkflow(f"job {child} depends on job {parent}, which does not exist", node=child)
        for p, c in edges:
            if p == parent:
                edges[(p, c)] = outcome
    return edges


async def _outcome_of(client: Client, job_id: str) -> str | None:
    """'' for a job that has not ended, its outcome if it did, None if there is no such job."""
    r = client.redis
    async with r.pipeline(transaction=False) as pipe:
        pipe.exists(keys.job(job_id))
        pipe.get(keys.result(job_id))
        pipe.hget(keys.node(job_id), "end")
        exists, raw, ended = await pipe.execute()
    if ended:
        return str(ended.decode())
    if raw is not None:
        d = deserialize(raw)
        if d.get("s"):
            return "complete"
        err = d.get("r")
        return "aborted" if isinstance(err, RemoteError) and err.type == "CancelledError" else "failed"
    return "" if exists else None


async def _discard(client: Client, wf_id: str, nodes: Sequence[Node]) -> None:
    """Remove what a creation that was refused wrote (its nodes never ran)."""
    r = client.redis
    written = [i.decode() for i in await _one(r, "lrange", keys.workflow_nodes(wf_id), 0, -1)]
    async with r.pipeline(transaction=False) as pipe:
        for i in written:
            pipe.delete(keys.job(i), keys.node(i))
        pipe.delete(keys.workflow_nodes(wf_id), keys.workflow_sinks(wf_id))
        await pipe.execute()


async def _one(redis: Any, command: str, *args: Any) -> Any:
    """The reply to one command (through a pipeline: typed as one, and one round trip)."""
    async with redis.pipeline(transaction=False) as pipe:
        getattr(pipe, command)(*args)
        return (await pipe.execute())[0]


# --- the handle -----------------------------------------------------------------------------
@dataclass
class NodeState:
    """One node of a workflow as :meth:`Workflow.status` reports it."""

    job_id: str
    function: str | None
    state: str  # waiting, queued, in_progress, complete, failed, aborted, cancelled, skipped
    children: list[str] = field(default_factory=list)
    reason: str | None = None


@dataclass
class WorkflowStatus:
    """A workflow's progress: ``state`` is ``running`` or ``ended``; ``failed`` counts nodes
    that failed, were aborted or were cancelled."""

    workflow_id: str
    state: str
    total: int
    ended: int
    failed: int
    failed_node: str | None
    aborted: bool
    created_ms: int | None
    ended_ms: int | None
    nodes: list[NodeState]

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


class Workflow:
    """A workflow in Redis: its result, every node's state, abort, events."""

    def __init__(self, client: Client, workflow_id: str) -> None:
        self.client = client
        self.id = workflow_id

    def __repr__(self) -> str:
        return f"<Workflow {self.id}>"

    def job(self, job_id: str) -> JobHandle[Any]:
        return self.client.job(job_id)

    async def outputs(self) -> tuple[list[str], bool]:
        """The ids whose results make the workflow's result, and whether it is a list."""
        r = self.client.redis
        async with r.pipeline(transaction=False) as pipe:
            pipe.lrange(keys.workflow_sinks(self.id), 0, -1)
            pipe.hget(keys.workflow(self.id), "kind")
            ids, kind = await pipe.execute()
        if kind is None:
            from asyncjobs.errors import JobNotFound

            raise JobNotFound(self.id)
        return [i.decode() for i in ids], kind == b"list"

    def _wait(self, deadline: float | None, timeout: float | None) -> float:
        """How long to wait for the next event: until the safety poll, or the deadline
        (``TimeoutError`` once it has passed)."""
        wait = self.client.poll_interval * 4
        if deadline is not None:
            wait = min(wait, deadline - asyncio.get_running_loop().time())
            if wait <= 0:
                raise TimeoutError(f"workflow {self.id} did not end within {timeout}s")
        return wait

    async def result(self, timeout: float | None = None) -> Any:
        """Wait for the workflow's result: its last step's (a chain), its callback's (a chord),
        the list of its members' (a group). A failure raises the :class:`JobFailed` of the node
        that failed first (a cancelled step says which one); ``TimeoutError`` after ``timeout`` s."""
        ids, as_list = await self.outputs()
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with self.client.hub.subscribe(keys.workflow_events(self.id)) as queue:
            pending, failed = await self._pending(ids)
            while pending and not failed:
                event = await events.next_event(queue, self._wait(deadline, timeout))
                if event is None:  # the safety poll: an event may have been missed
                    pending, failed = await self._pending(ids)
                elif event.get("job_id") in pending and event.get("event") in TERMINAL:
                    pending.discard(event["job_id"])
                    failed = event.get("event") != "complete"
            return await self._collect(ids, as_list)

    async def _pending(self, ids: list[str]) -> tuple[set[str], bool]:
        """The outputs that have not ended, and whether one ended without completing."""
        states = await self._states(ids)
        failed = any(s in TERMINAL and s != "complete" for s in states.values())
        return {i for i, s in states.items() if s not in TERMINAL}, failed

    async def _states(self, ids: list[str]) -> dict[str, str]:
        async with self.client.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hget(keys.node(i), "st")
            return {i: (s or b"").decode() for i, s in zip(ids, await pipe.execute(), strict=True)}

    async def _collect(self, ids: list[str], as_list: bool) -> Any:
        raws = await _one(self.client.redis, "mget", [keys.result(i) for i in ids]) if ids else []
        out = []
        for i, raw in zip(ids, raws, strict=True):
            if raw is None:
                raise await self._failure(i)
            d = deserialize(raw)
            if not d.get("s"):
                raise await self._failure(i)
            out.append(d.get("r"))
        return out if as_list else out[0]

    async def _failure(self, job_id: str) -> JobFailed:
        """The error to raise for output ``job_id``: the first failed node's own error."""
        first = await _one(self.client.redis, "hget", keys.workflow(self.id), "failed_node")
        culprit = first.decode() if first else job_id
        try:
            await self.client.job(culprit).result(timeout=0)
        except JobFailed as e:
            return e
        except Exception:  # expired or unreadable: describe it from the node
            pass
        reason = await _one(self.client.redis, "hget", keys.node(job_id), "reason")
        why = reason.decode() if reason else "did not complete"
        return JobAborted(job_id, "?", "Cancelled", why)

    async def status(self) -> WorkflowStatus:
        """Every node's state (waiting, queued, in_progress, complete, failed, aborted,
        cancelled, skipped), its children (the graph's edges) and, for a cancelled node, the reason."""
        r = self.client.redis
        info = {k.decode(): v.decode() for k, v in (await _one(r, "hgetall", keys.workflow(self.id))).items()}
        if not info:
            from asyncjobs.errors import JobNotFound

            raise JobNotFound(self.id)
        ids = [i.decode() for i in await _one(r, "lrange", keys.workflow_nodes(self.id), 0, -1)]
        async with r.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(keys.node(i))
                pipe.exists(keys.in_progress(i))
            replies = await pipe.execute()
        nodes = [_node_state(i, h, running) for i, h, running in zip(ids, replies[::2], replies[1::2], strict=True)]
        return WorkflowStatus(
            self.id,
            info.get("st", "running"),
            int(info.get("total", 0)),
            int(info.get("ended", 0)),
            int(info.get("failed", 0)),
            info.get("failed_node"),
            "aborted" in info,
            int(info["created_ms"]) if "created_ms" in info else None,
            int(info["ended_ms"]) if "ended_ms" in info else None,
            nodes,
        )

    async def abort(self, *, timeout: float = 10.0) -> int:
        """Cancel the nodes that wait and abort the queued and running ones; returns how many
        nodes this stopped (cancelled or aborted)."""
        r = self.client.redis
        script = r.register_script(workflow_scripts.ABORT)
        before = await self.status()
        queued = await script(args=[self.id])
        if queued is None:
            from asyncjobs.errors import JobNotFound

            raise JobNotFound(self.id)
        handles = [self.client.job(i.decode()) for i in queued]
        aborted = await asyncio.gather(*(h.abort(timeout=timeout) for h in handles))
        waiting = sum(1 for n in before.nodes if n.state == "waiting")
        return waiting + sum(1 for a in aborted if a)

    async def events(self, *, timeout: float | None = None) -> AsyncIterator[dict[str, Any]]:
        """Yield the workflow's events as they happen: a node ``queued`` and each node's end
        (``complete``, ``failed``, ``aborted``, ``cancelled``, ``skipped``, with the reason),
        ending with ``workflow_ended`` (at once if it has ended already)."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        async with self.client.hub.subscribe(keys.workflow_events(self.id)) as queue:
            if await _one(self.client.redis, "hget", keys.workflow(self.id), "st") == b"ended":
                yield {"workflow": self.id, "event": "workflow_ended"}
                return
            while True:
                event = await events.next_event(queue, self._wait(deadline, timeout))
                if event is None:  # the safety poll: the end may have been missed
                    if await _one(self.client.redis, "hget", keys.workflow(self.id), "st") == b"ended":
                        yield {"workflow": self.id, "event": "workflow_ended"}
                        return
                    continue
                yield event
                if event.get("event") == "workflow_ended":
                    return


async def cancel_waiting(client: Client, job_id: str) -> bool:
    """Cancel a waiting node (and what waits on it); False if it is not waiting (any more)."""
    script = client.redis.register_script(workflow_scripts.CANCEL)
    return bool(await script(args=[job_id, "aborted"]))


def _node_state(job_id: str, h: dict[bytes, bytes], running: int) -> NodeState:
    d = {k.decode(): v.decode() for k, v in h.items()}
    state = d.get("st", "expired")
    if state == "queued" and running:
        state = "in_progress"
    children = d["ch"].split(",") if d.get("ch") else []
    return NodeState(job_id, d.get("fn"), state, children, d.get("reason"))


async def enqueue_dependent(
    client: Client, function: JobFunction[Any, Any], args: Sequence[Any], kwargs: dict[str, Any]
) -> JobHandle[Any]:
    """Enqueue one job made with ``function.options(depends_on=[...])``: it waits until those
    jobs ended and is queued in the call that ends the last (cancelled if one did not complete)."""
    job_id = function.enqueue_options.job_id or new_job_id()
    node = Node(job_id, function, list(args), dict(kwargs), parents=list(dict.fromkeys(function.depends_on)))
    node.label = f"job {job_id} ({function.name})"
    node.args, node.kwargs = checked_arguments(node)
    await start_graph(client, job_id, [node], Part([job_id], False))
    return client.job(job_id, function.enqueue_options.queue or function.opts.queue or client.default_queue)
