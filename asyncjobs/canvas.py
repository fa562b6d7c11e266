"""Workflow building blocks: signatures (``fn.s(...)``, ``fn.si(...)``), :func:`chain`,
:func:`group` and :func:`chord`, and their compilation into a graph of nodes.

A canvas is a value: building one writes nothing. ``await canvas.enqueue(client)`` (or
``client.enqueue_workflow(canvas)``) checks every node's arguments against its function,
refuses cycles and unknown parents, and creates the whole graph in Redis
(:mod:`asyncjobs.workflows`).

How results flow: a step of a chain made with ``.s()`` receives the previous step's result as
its first argument (a group's results as one list, in the group's order); ``.si()`` receives
nothing. A chord's callback receives its group's results.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from asyncjobs.errors import ConfigError, InvalidArguments, InvalidWorkflow

if TYPE_CHECKING:
    from asyncjobs.client import Client
    from asyncjobs.registry import JobFunction
    from asyncjobs.workflows import Workflow

R = TypeVar("R")

#: a chord's (or a callback's) rule for parents that did not complete
ChordPolicy = Literal["fail_fast", "pass_errors", "ignore_failures"]
POLICIES: dict[str, str] = {"fail_fast": "fast", "pass_errors": "all", "ignore_failures": "ignore"}
#: the keyword argument that tells the runtime which results to pass a node (never a user's)
INPUTS_KWARG = "_asyncjobs_inputs"


class Canvas:
    """A part of a workflow: a signature, chain, group or chord."""

    callbacks: tuple[tuple[str, Canvas], ...] = ()

    async def enqueue(
        self, client: Client, *, workflow_id: str | None = None, expires: float | None = None
    ) -> Workflow:
        """Create this workflow in Redis and start it (see :meth:`Client.enqueue_workflow`)."""
        return await client.enqueue_workflow(self, workflow_id=workflow_id, expires=expires)

    def _with_callback(self, when: str, callback: Canvas) -> Any:
        if not isinstance(callback, Canvas):
            raise ConfigError(f"a callback must be a signature or a canvas (fn.s(...)), got {callback!r}")
        return replace(self, callbacks=(*self.callbacks, (when, callback)))  # type: ignore[type-var]

    def on_success(self, callback: Canvas) -> Any:
        """Run ``callback`` with this part's result(s) when it completed; skipped otherwise."""
        return self._with_callback("success", callback)

    def on_failure(self, callback: Canvas) -> Any:
        """Run ``callback`` once this part ended with a failure (failed results passed as
        :class:`~asyncjobs.JobFailed` values); skipped when everything completed."""
        return self._with_callback("failure", callback)

    def on_complete(self, callback: Canvas) -> Any:
        """Run ``callback`` once this part ended, however (failures passed as :class:`~asyncjobs.JobFailed`)."""
        return self._with_callback("all", callback)


@dataclass(frozen=True)
class Signature(Canvas, Generic[R]):
    """One job of a workflow: a function, its arguments and placement. Build with ``fn.s(...)``
    (receives the previous step's result first) or ``fn.si(...)`` (receives nothing)."""

    function: JobFunction[Any, R]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    immutable: bool = False
    callbacks: tuple[tuple[str, Canvas], ...] = ()

    def __repr__(self) -> str:
        return f"{self.function.name}.{'si' if self.immutable else 's'}(...)"


@dataclass(frozen=True)
class Chain(Canvas):
    """Steps run one after the other; each ``.s()`` step receives the previous result."""

    steps: tuple[Canvas, ...]
    callbacks: tuple[tuple[str, Canvas], ...] = ()


@dataclass(frozen=True)
class Group(Canvas):
    """Members run in parallel; the group's result is the list of theirs, in order."""

    members: tuple[Canvas, ...]
    callbacks: tuple[tuple[str, Canvas], ...] = ()


@dataclass(frozen=True)
class Chord(Canvas):
    """A group, then a callback called once with the group's results when all have ended."""

    header: Group
    body: Canvas
    policy: ChordPolicy = "fail_fast"
    callbacks: tuple[tuple[str, Canvas], ...] = ()


def chain(*steps: Canvas) -> Chain:
    """``chain(parse.s(path), report.s(), email.s(to))``: run steps in order, passing results."""
    return Chain(_parts(steps, "chain"))


def group(members: Iterable[Canvas]) -> Group:
    """``group([f.s(x) for x in xs])``: run members in parallel."""
    return Group(_parts(tuple(members), "group"))


def chord(header: Group | Iterable[Canvas], callback: Canvas, *, policy: ChordPolicy = "fail_fast") -> Chord:
    """Run ``header`` (a group), then ``callback`` once with the list of its results, in order.

    ``policy`` for members that fail (after their retries): ``"fail_fast"`` cancels the
    callback at once (with the reason); ``"pass_errors"`` waits for all and passes a failed
    member's :class:`~asyncjobs.JobFailed` in its place; ``"ignore_failures"`` waits for all
    and passes the results of the members that completed.
    """
    if policy not in POLICIES:
        raise ConfigError(f"chord policy {policy!r} is not one of {', '.join(POLICIES)}", key="policy")
    g = header if isinstance(header, Group) else group(header)
    return Chord(g, _parts((callback,), "chord callback")[0], policy)


def _parts(parts: Sequence[Canvas], what: str) -> tuple[Canvas, ...]:
    if not parts:
        raise ConfigError(f"an empty {what}: give at least one signature (fn.s(...))")
    for p in parts:
        if not isinstance(p, Canvas):
            raise ConfigError(f"{what} part {p!r} is not a signature: build one with fn.s(...) or fn.si(...)")
    return tuple(parts)


# --- compilation ----------------------------------------------------------------------------
@dataclass
class Node:
    """One job of a compiled workflow."""

    id: str
    function: JobFunction[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    parents: list[str] = field(default_factory=list)
    #: parents whose results the job receives, and how: one value or a list
    inputs: list[str] = field(default_factory=list)
    as_list: bool = False
    policy: str = "fast"
    label: str = ""


@dataclass
class Part:
    """What a compiled canvas hands on: the nodes whose results are its result."""

    results: list[str]
    as_list: bool


class Graph:
    """Compiles a canvas into :class:`Node` s with ids ``<workflow id>.<n>`` (or the id given
    with ``fn.options(job_id=...)``); parents named by ``depends_on`` stay as given."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        self.nodes: list[Node] = []

    def build(self, canvas: Canvas) -> Part:
        part = self._compile(canvas, None, "fast")
        for node in self.nodes:
            node.args, node.kwargs = checked_arguments(node)
        return part

    def _compile(self, c: Canvas, incoming: Part | None, policy: str) -> Part:
        if isinstance(c, Signature):
            part = self._signature(c, incoming, policy)
        elif isinstance(c, Chain):
            part = self._chain(c, incoming, policy)
        elif isinstance(c, Group):
            parts = [self._compile(m, incoming, policy) for m in c.members]
            part = Part([r for p in parts for r in p.results], True)
        elif isinstance(c, Chord):
            part = self._compile(c.body, self._compile(c.header, incoming, policy), POLICIES[c.policy])
        else:
            raise ConfigError(f"{c!r} is not a signature, chain, group or chord")
        for when, callback in c.callbacks:
            self._compile(callback, part, when)
        return part

    def _chain(self, c: Chain, incoming: Part | None, policy: str) -> Part:
        part = self._compile(c.steps[0], incoming, policy)
        for step in c.steps[1:]:
            part = self._compile(step, part, "fast")
        return part

    def _signature(self, s: Signature[Any], incoming: Part | None, policy: str) -> Part:
        f = s.function
        node_id = f.enqueue_options.job_id or f"{self.workflow_id}.{len(self.nodes)}"
        parents = list(incoming.results) if incoming else []
        node = Node(node_id, f, list(s.args), dict(s.kwargs), policy=policy)
        node.label = f"node {len(self.nodes)} ({f.name}, job {node_id})"
        if incoming and not s.immutable:
            node.inputs, node.as_list = parents[:], incoming.as_list
        node.parents = list(dict.fromkeys([*parents, *f.depends_on]))
        self.nodes.append(node)
        return Part([node_id], False)


def checked_arguments(node: Node) -> tuple[list[Any], dict[str, Any]]:
    """The node's arguments checked against its function and encoded; a node that receives
    its parents' results is checked with its first parameter left for them."""
    f = node.function
    try:
        if not node.inputs:
            a, k = f.encode_arguments(node.args, node.kwargs)
            return list(a), dict(k)
        return _partial(f, node.args, node.kwargs)
    except InvalidArguments as e:
        raise InvalidWorkflow(f"{node.label}: {e}", node=node.id, errors=e.errors) from None


_RESULT = object()


def _partial(f: JobFunction[Any, Any], args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
    spec = f.arguments
    if not spec.positional and spec.var_args is None:
        raise InvalidArguments(
            f.name,
            [{"loc": ["args"], "type": "no_input", "msg": "has no parameter for the previous result: use .si()"}],
        )
    first = spec.positional[0] if spec.positional else None
    try:
        a, k = spec.encode([None, *args], kwargs)
        return list(a[1:]), dict(k)
    except InvalidArguments as e:
        rest = [err for err in e.errors if not err.get("loc") or err["loc"][0] != first]
        if rest:
            raise InvalidArguments(f.name, rest) from None
    # only the placeholder for the result misfits its annotation: encode the given values alone
    named = dict(zip(spec.positional[1:], args, strict=False))
    out = [spec.adapters[n].dump_python(v, mode="json") if n in spec.adapters else v for n, v in named.items()]
    out += list(args[len(named) :])
    enc = {n: spec.adapters[n].dump_python(v, mode="json") if n in spec.adapters else v for n, v in kwargs.items()}
    return out, enc


def check_acyclic(nodes: Sequence[Node]) -> None:
    """Refuse a graph whose dependencies loop (naming a node on the loop)."""
    ids = {n.id for n in nodes}
    children: dict[str, list[str]] = {n.id: [] for n in nodes}
    need = {n.id: 0 for n in nodes}
    for n in nodes:
        for p in n.parents:
            if p in ids:
                children[p].append(n.id)
                need[n.id] += 1
    ready = [i for i, k in need.items() if k == 0]
    seen = 0
    while ready:
        i = ready.pop()
        seen += 1
        for c in children[i]:
            need[c] -= 1
            if need[c] == 0:
                ready.append(c)
    if seen < len(nodes):
        loop = next(i for i, k in need.items() if k > 0)
        raise InvalidWorkflow(f"the dependencies form a cycle through job {loop}", node=loop)


def inputs_marker(node: Node) -> dict[str, Any]:
    """The keyword argument that tells the runtime which results to read for ``node``."""
    return {"from": node.inputs, "list": node.as_list, "policy": node.policy}
