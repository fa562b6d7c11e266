"""Validation of HTTP input with pydantic: the enqueue envelope, and each job function's
arguments checked against its signature and type hints before anything is written.

For every function a pydantic model is built from ``inspect.signature`` (skipping the first,
``ctx``, parameter); positional ``args`` are mapped onto parameter names first, so one
model checks both. Validation is strict JSON validation: ``"5"`` is not an ``int``; ``2.0`` is
(JSON and JSON Schema do not tell it from ``2``), and the job gets ``2``.
"""

from __future__ import annotations

import inspect
import types
import typing
from datetime import datetime
from functools import cached_property
from typing import Annotated, Any

from arq.utils import timestamp_ms
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    create_model,
)

from asyncjobs.client import ID_RE, QUEUE_RE
from asyncjobs.errors import ConfigError, InvalidArguments
from asyncjobs.keys import PRIORITY_MAX
from asyncjobs.registry import MAX_DEFER_S, JobFunction, Registry, check_defer
from web.responses import ApiError, dumps


def whole_number(value: Any) -> Any:
    """``2.0`` as ``2``: JSON (and JSON Schema's ``integer``) does not tell them apart. Only
    where a float holds the number exactly (up to 2**53): larger ones were rounded."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def iso_datetime(value: Any) -> Any:
    """An RFC 3339 / ISO 8601 date-time string as a datetime (naive without an offset: local, as
    in arq); anything else but ``None`` is refused (no Unix timestamps, no numbers)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError("must be an ISO 8601 date-time string like 2030-01-01T12:00:00Z")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError("must be an ISO 8601 date-time string like 2030-01-01T12:00:00Z") from None
    return parsed


WholeInt = Annotated[StrictInt, BeforeValidator(whole_number)]


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
        StrictFloat | None, Field(ge=0, description="seconds", json_schema_extra={"maximum": MAX_DEFER_S})
    ] = None
    defer_until: Annotated[
        datetime | None,
        BeforeValidator(iso_datetime),
        Field(description="ISO 8601, at most 366 days ahead; a past time means now"),
    ] = None
    priority: Annotated[
        WholeInt, Field(ge=0, le=PRIORITY_MAX, description="0-9, higher runs first among due jobs; not with defer_*")
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
        hints = {name: _json_hint(hint) for name, hint in _hints(function.func).items()}
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

    def validate(self, args: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """``args`` and ``kwargs`` as the job gets them (whole numbers given as ``2.0`` for an
        ``int`` become ``2``); :class:`InvalidArguments` naming the failing parameter."""
        named = self._named(args, kwargs)
        try:
            valid = self.model.model_validate_json(dumps(named), strict=True)
        except ValidationError as e:
            errors = pydantic_errors(e)
            for err in errors:
                if err["type"] == "extra_forbidden":
                    err["msg"] = f"unexpected keyword argument; parameters are {', '.join(self.model.model_fields)}"
            raise InvalidArguments(self.function.name, errors) from None
        values = {name: getattr(valid, name, None) for name in named}
        n = min(len(args), len(self.positional))
        positional = [_as_validated(a, values[p]) for a, p in zip(args[:n], self.positional[:n], strict=True)]
        return positional + args[n:], {k: _as_validated(v, values[k]) for k, v in kwargs.items()}

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


def _json_hint(hint: Any) -> Any:
    """``hint`` with every ``int`` in it taking whole-number floats (JSON Schema's ``integer``)."""
    if hint is int:
        return WholeInt
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None or origin is typing.Literal or not args:
        return hint
    if origin is Annotated:
        return Annotated[(_json_hint(args[0]), *hint.__metadata__)]
    new = tuple(_json_hint(a) if not isinstance(a, list) else a for a in args)
    if new == args:
        return hint
    if origin in (typing.Union, types.UnionType):
        return typing.Union[new]  # noqa: UP007 (built from a tuple)
    if isinstance(hint, types.GenericAlias):
        return types.GenericAlias(origin, new)
    return hint.copy_with(new) if hasattr(hint, "copy_with") else hint


def _as_validated(raw: Any, valid: Any) -> Any:
    """``raw`` with the whole-number floats pydantic turned into ints taken from ``valid``."""
    if isinstance(raw, float) and isinstance(valid, int) and not isinstance(valid, bool):
        return valid
    if isinstance(raw, list) and isinstance(valid, list | tuple) and len(raw) == len(valid):
        return [_as_validated(r, v) for r, v in zip(raw, valid, strict=True)]
    if isinstance(raw, dict) and isinstance(valid, dict):
        return {k: _as_validated(v, valid.get(k)) for k, v in raw.items()}
    return raw


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
