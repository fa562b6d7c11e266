"""Validation of HTTP input with pydantic: the enqueue envelope, and each job function's
arguments checked against its signature and type hints before anything is written.

For every function a pydantic model is built from ``inspect.signature`` (skipping the first,
``ctx``, parameter); positional ``args`` are mapped onto parameter names first, so one
model checks both. Validation is strict JSON validation: ``"5"`` is not an ``int``.
"""

from __future__ import annotations

import inspect
import typing
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any

from arq.utils import timestamp_ms
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, create_model

from asyncjobs.client import ID_RE, QUEUE_RE
from asyncjobs.errors import ConfigError, InvalidArguments
from asyncjobs.keys import PRIORITY_MAX
from asyncjobs.registry import MAX_DEFER_S, JobFunction, Registry, check_defer
from web.responses import ApiError, dumps


class EnqueueRequest(BaseModel):
    """The body of ``POST /api/jobs``."""

    model_config = ConfigDict(extra="forbid")

    function: Annotated[str, Field(min_length=1, max_length=200, description="registered job function name")]
    args: list[Any] = Field(default_factory=list, description="positional arguments")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments")
    job_id: Annotated[str | None, Field(pattern=ID_RE.pattern, description="idempotency key")] = None
    queue: Annotated[str | None, Field(pattern=QUEUE_RE.pattern)] = None
    # the bound is checked with defer_until's (check_defer), so both give the same error
    defer_by: Annotated[
        float | None, Field(ge=0, description="seconds", json_schema_extra={"maximum": MAX_DEFER_S})
    ] = None
    defer_until: Annotated[datetime | None, Field(description="at most 366 days ahead; a past time means now")] = None
    priority: Annotated[
        StrictInt, Field(ge=0, le=PRIORITY_MAX, description="0-9, higher runs first among due jobs; not with defer_*")
    ] = 0


def pydantic_errors(e: ValidationError) -> list[dict[str, Any]]:
    """JSON-safe error list: location, message and type (the input is left out on purpose)."""
    return [{"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]} for err in e.errors()]


def parse_enqueue(body: Any) -> EnqueueRequest:
    """Validate the envelope; 422 naming the bad field if it does not fit."""
    if not isinstance(body, dict):
        raise ApiError(
            422,
            "invalid_request",
            'the request body must be a JSON object like {"function": "count_words", "args": ["some text"]}',
        )
    try:
        req = EnqueueRequest.model_validate(body)
    except ValidationError as e:
        errors = pydantic_errors(e)
        where = ".".join(str(p) for p in errors[0]["loc"]) or "body"
        raise ApiError(422, "invalid_request", f"{where}: {errors[0]['msg']}", errors) from None
    if req.defer_by is not None and req.defer_until is not None:
        raise ApiError(422, "invalid_request", "give defer_by or defer_until, not both", None)
    if req.priority and (req.defer_by is not None or req.defer_until is not None):
        raise ApiError(
            422,
            "invalid_request",
            "priority: cannot be combined with defer_by or defer_until (priority orders jobs that are due now); "
            "drop the deferral or the priority",
            [{"loc": ["priority"], "msg": "not allowed with defer_by or defer_until", "type": "priority_with_defer"}],
        )
    try:
        check_defer(req.defer_by, req.defer_until, timestamp_ms())
    except ConfigError as e:
        raise ApiError(
            422, "invalid_request", str(e), [{"loc": [e.key], "msg": str(e), "type": "too_far_ahead"}]
        ) from None
    return req


class FunctionSchema:
    """The parameters of one job function as a pydantic model and a JSON Schema."""

    def __init__(self, function: JobFunction[Any, Any]) -> None:
        self.function = function
        params = list(function.signature.parameters.values())[1:]  # the first is ctx
        self.positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.var_args = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
        self.var_kwargs = next((p for p in params if p.kind is p.VAR_KEYWORD), None)
        hints = _hints(function.func)
        fields: dict[str, Any] = {}
        for p in params:
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                continue
            default = ... if p.default is inspect.Parameter.empty else p.default
            fields[p.name] = (hints.get(p.name, Any), default)
        config = ConfigDict(extra="allow" if self.var_kwargs is not None else "forbid", arbitrary_types_allowed=True)
        try:
            self.model: type[BaseModel] = create_model(f"{function.name}_params", __config__=config, **fields)
            self.model.model_json_schema()
        except Exception:  # hints pydantic cannot express: check names and arity only
            loose = {name: (Any, default) for name, (_, default) in fields.items()}
            self.model = create_model(f"{function.name}_params", __config__=config, **loose)  # type: ignore[call-overload]

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of the keyword form of the arguments (``x-positional`` gives the order)."""
        schema = self.model.model_json_schema()
        schema.pop("title", None)
        schema["x-positional"] = self.positional
        if self.var_args is not None:
            schema["x-var-positional"] = self.var_args.name
        return schema

    def validate(self, args: list[Any], kwargs: dict[str, Any]) -> None:
        """Raise :class:`InvalidArguments` naming the failing parameter."""
        named = self._named(args, kwargs)
        try:
            self.model.model_validate_json(dumps(named), strict=True)
        except ValidationError as e:
            errors = pydantic_errors(e)
            for err in errors:
                if err["type"] == "extra_forbidden":
                    err["msg"] = f"unexpected keyword argument; parameters are {', '.join(self.model.model_fields)}"
            raise InvalidArguments(self.function.name, errors) from None

    def _named(self, args: list[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.positional) and self.var_args is None:
            raise InvalidArguments(
                self.function.name,
                [
                    {
                        "loc": ["args"],
                        "type": "too_many_arguments",
                        "msg": f"takes at most {len(self.positional)} positional argument(s), got {len(args)}",
                    }
                ],
            )
        named = dict(zip(self.positional, args, strict=False))
        for name in kwargs:
            if name in named:
                raise InvalidArguments(
                    self.function.name,
                    [{"loc": [name], "type": "multiple_values", "msg": "given both in args and in kwargs"}],
                )
        named.update(kwargs)
        return named


def _hints(func: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable string annotations: validate those parameters as Any
        return {}


class Schemas:
    """:class:`FunctionSchema` for every function of a registry, built once."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._by_name = {f.name: FunctionSchema(f) for f in registry}

    def get(self, name: str) -> FunctionSchema:
        """The schema of ``name``; :class:`UnknownFunction` if nobody registered it."""
        if name not in self._by_name:
            self.registry.get(name)  # raises UnknownFunction with the known names
        return self._by_name[name]

    def all(self) -> list[FunctionSchema]:
        return [self._by_name[n] for n in sorted(self._by_name)]
