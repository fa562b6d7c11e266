"""Validation of HTTP input with pydantic: the enqueue envelope here, and each job
function's arguments with :class:`asyncjobs.arguments.ArgumentSpec` (the check the Python
client and the CLI run too), before anything is written. Validation is strict JSON
validation: ``"5"`` is not an ``int``; ``2.0`` is (JSON and JSON Schema do not tell it from
``2``), and the job gets ``2``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
)

from asyncjobs.arguments import ArgumentSpec, whole_number
from asyncjobs.errors import ConfigError
from asyncjobs.flow import MAX_KEY_LEN, MAX_WINDOW_S, Flow, flow_options
from asyncjobs.registry import MAX_DEFER_S, NEW_ID_RE, PRIORITY_MAX, QUEUE_RE, EnqueueOptions, Registry
from web.responses import ApiError


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
Window = Annotated[StrictFloat | None, Field(gt=0, le=MAX_WINDOW_S, description="seconds")]
FlowKey = Annotated[str | None, Field(min_length=1, max_length=MAX_KEY_LEN)]


class EnqueueRequest(BaseModel):
    """The body of ``POST /api/jobs``."""

    model_config = ConfigDict(extra="forbid")

    function: Annotated[str, Field(min_length=1, max_length=200, description="registered job function name")]
    args: list[Any] = Field(default_factory=list, description="positional arguments")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="keyword arguments")
    job_id: Annotated[str | None, Field(pattern=NEW_ID_RE.pattern, description="idempotency key")] = None
    queue: Annotated[str | None, Field(pattern=QUEUE_RE.pattern)] = None
    # the bound is checked with defer_until's (EnqueueOptions), so both give the same error
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
    # flow control (asyncjobs.flow): one of dedupe_for, debounce, throttle; combinations are
    # refused by flow_options, as for the Python client
    dedupe_key: FlowKey = None
    dedupe_for: Window = None
    debounce: Window = None
    throttle: Window = None
    throttle_key: FlowKey = None


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
    return req


def enqueue_options(req: EnqueueRequest) -> EnqueueOptions:
    """The request's placement, checked (once) by :class:`EnqueueOptions`; its refusal as a 422
    naming the field. A reserved job id is left to the app's :class:`ConfigError` handler."""
    flow = enqueue_flow(req)
    try:
        return EnqueueOptions(req.job_id, req.queue, req.defer_by, req.defer_until, req.priority, flow)
    except ConfigError as e:
        if e.key == "debounce":  # with a deferral or a priority
            raise ApiError(
                422, "invalid_request", str(e), [{"loc": [e.key], "msg": str(e), "type": "debounce_with_defer"}]
            ) from None
        if e.key == "priority":  # the range is the schema's: only the mix with a deferral is left
            raise ApiError(
                422,
                "invalid_request",
                "priority: cannot be combined with defer_by or defer_until (priority orders jobs that are due now); "
                "drop the deferral or the priority",
                [
                    {
                        "loc": ["priority"],
                        "msg": "not allowed with defer_by or defer_until",
                        "type": "priority_with_defer",
                    }
                ],
            ) from None
        if e.key in ("defer_by", "defer_until"):
            if req.defer_by is not None and req.defer_until is not None:
                raise ApiError(422, "invalid_request", "give defer_by or defer_until, not both", None) from None
            raise ApiError(
                422, "invalid_request", str(e), [{"loc": [e.key], "msg": str(e), "type": "too_far_ahead"}]
            ) from None
        raise


def enqueue_flow(req: EnqueueRequest) -> Flow | None:
    """The request's flow-control option, or a 422 naming the field that does not fit."""
    try:
        return flow_options(
            dedupe_key=req.dedupe_key,
            dedupe_for=req.dedupe_for,
            debounce=req.debounce,
            throttle=req.throttle,
            throttle_key=req.throttle_key,
        )
    except ConfigError as e:
        raise ApiError(
            422, "invalid_request", str(e), [{"loc": [e.key], "msg": str(e), "type": "flow_control"}]
        ) from None


#: the parameters of one job function: the library's own checker, so HTTP, the CLI and the
#: Python client accept and refuse the same arguments
FunctionSchema = ArgumentSpec


class Schemas:
    """:class:`FunctionSchema` for every function of a registry, built once."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._by_name = {f.name: f.arguments for f in registry}

    def get(self, name: str) -> FunctionSchema:
        """The schema of ``name``; :class:`UnknownFunction` if nobody registered it."""
        if name not in self._by_name:
            self.registry.get(name)  # raises UnknownFunction with the known names
        return self._by_name[name]

    def all(self) -> list[FunctionSchema]:
        return [self._by_name[n] for n in sorted(self._by_name)]
