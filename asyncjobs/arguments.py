"""A job function's arguments, checked and carried the same way on every path.

One :class:`ArgumentSpec` per job function, built from its signature and type hints, does
three things:

- **check**: arguments from Python (``client.enqueue``), the CLI (``--args`` JSON) and HTTP
  (``POST /api/jobs``) are validated against the signature *and* the type hints, strictly,
  in their JSON form (``"5"`` is not an ``int``); a mismatch is :class:`InvalidArguments`
  naming the parameter.
- **encode** (at enqueue): values of parameters annotated with richer types (pydantic models,
  dataclasses, ``datetime``, ``UUID``, ``Decimal``, lists of those, ...) become JSON-like data
  (pydantic's ``dump_python(mode="json")``), so the payload stays msgpack and language-neutral.
- **decode** (in the worker, before the call): those parameters are validated back into their
  annotated types (``validate_python``), so the job receives a model, not a dict.

Parameters annotated with JSON-native types only (``str``, ``int``, ``float``, ``bool``,
``None``, ``list``/``dict`` of those, unions of those, or nothing) are neither encoded nor
decoded, and a function whose parameters all have plain ``str``/``int``/``float``/``bool``
annotations is checked by a type test per argument, before any pydantic work.
"""

from __future__ import annotations

import inspect
import types
import typing
import warnings
from functools import cached_property
from typing import TYPE_CHECKING, Annotated, Any

import orjson
from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictInt, TypeAdapter, ValidationError, create_model
from pydantic_core import PydanticSerializationError, to_jsonable_python

from asyncjobs.errors import InvalidArguments, truncate

if TYPE_CHECKING:
    from asyncjobs.registry import JobFunction

EMPTY = inspect.Parameter.empty
# annotations checked with a type test (``float`` also takes an ``int``, as JSON does)
SCALARS: dict[Any, tuple[type, ...]] = {str: (str,), int: (int,), float: (float, int), bool: (bool,)}
UNCHECKED = (Any, EMPTY, object)
NATIVE = frozenset({str, int, float, bool, type(None), list, dict, *UNCHECKED})
UNIONS = (typing.Union, types.UnionType)


def whole_number(value: Any) -> Any:
    """``2.0`` as ``2``: JSON (and JSON Schema's ``integer``) does not tell them apart. Only
    where a float holds the number exactly (up to 2**53): larger ones were rounded."""
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


WholeInt = Annotated[StrictInt, BeforeValidator(whole_number)]


def json_hint(hint: Any) -> Any:
    """``hint`` with every ``int`` in it taking whole-number floats (JSON Schema's ``integer``)."""
    if hint is int:
        return WholeInt
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is None or origin is typing.Literal or not args:
        return hint
    if origin is Annotated:
        return Annotated[(json_hint(args[0]), *hint.__metadata__)]
    new = tuple(json_hint(a) if not isinstance(a, list) else a for a in args)
    if new == args:
        return hint
    if origin in UNIONS:
        return typing.Union[new]  # noqa: UP007 (built from a tuple)
    if isinstance(hint, types.GenericAlias):
        return types.GenericAlias(origin, new)
    return hint.copy_with(new) if hasattr(hint, "copy_with") else hint


def as_validated(raw: Any, valid: Any) -> Any:
    """``raw`` with the whole-number floats that validation turned into ints taken from ``valid``."""
    if isinstance(raw, float) and isinstance(valid, int) and not isinstance(valid, bool):
        return valid
    if isinstance(raw, list) and isinstance(valid, list | tuple) and len(raw) == len(valid):
        return [as_validated(r, v) for r, v in zip(raw, valid, strict=True)]
    if isinstance(raw, dict) and isinstance(valid, dict):
        return {k: as_validated(v, valid.get(k)) for k, v in raw.items()}
    return raw


def native(tp: Any) -> bool:
    """True if values of annotation ``tp`` arrive from the payload as they were sent (nothing
    to convert): JSON-native types, and lists, dicts and unions of them."""
    if tp in NATIVE:
        return True
    origin = typing.get_origin(tp)
    if origin in (list, dict, *UNIONS):
        return all(native(a) for a in typing.get_args(tp))
    return False


class ArgumentSpec:
    """The parameters of one job function (besides ``ctx``): a pydantic model and JSON
    Schema of them, and the per-parameter adapters that encode and decode rich values."""

    def __init__(self, function: JobFunction[Any, Any]) -> None:
        self.function = function
        params = list(function.signature.parameters.values())
        if function.opts.executor is None:
            params = params[1:]  # ctx
        self.positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.var_args = next((p for p in params if p.kind is p.VAR_POSITIONAL), None)
        self.var_kwargs = next((p for p in params if p.kind is p.VAR_KEYWORD), None)
        self._params = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        hints = _hints(function.func)
        self.types: dict[str, Any] = {p.name: hints.get(p.name, Any) for p in self._params}
        self.adapters: dict[str, TypeAdapter[Any]] = {}
        for name, tp in self.types.items():
            if not native(tp):
                try:
                    self.adapters[name] = TypeAdapter(tp)
                except Exception:  # a type pydantic cannot handle: carried as given, like before
                    continue
        self._required = sum(p.default is EMPTY for p in self._params if p.name in self.positional)
        self._scalars = self._scalar_checks(params)

    def _scalar_checks(self, params: list[inspect.Parameter]) -> list[tuple[type, ...] | None] | None:
        """Per positional parameter, the types a plain type test accepts (``None``: anything);
        ``None`` overall when some parameter needs pydantic (or is keyword-only / variadic)."""
        if self.var_args is not None or self.var_kwargs is not None or len(self.positional) != len(params):
            return None
        checks: list[tuple[type, ...] | None] = []
        for name in self.positional:
            tp = self.types[name]
            if tp in SCALARS:
                checks.append(SCALARS[tp])
            elif tp in UNCHECKED:
                checks.append(None)
            else:
                return None
        return checks

    @cached_property
    def model(self) -> type[BaseModel]:
        """A pydantic model with one field per parameter (keyword form of the arguments)."""
        fields: dict[str, Any] = {}
        for p in self._params:
            fields[p.name] = (json_hint(self.types[p.name]), ... if p.default is EMPTY else p.default)
        config = ConfigDict(
            extra="allow" if self.var_kwargs is not None else "forbid",
            arbitrary_types_allowed=True,
            protected_namespaces=(),  # a parameter may be called model_name
        )
        name = f"{self.function.name}_params"
        with warnings.catch_warnings():  # a parameter may shadow a BaseModel attribute (json, copy)
            warnings.simplefilter("ignore")
            try:
                model: type[BaseModel] = create_model(name, __config__=config, **fields)
                model.model_json_schema()
            except Exception:  # hints pydantic cannot express: check names and arity only
                loose = {n: (Any, default) for n, (_, default) in fields.items()}
                model = create_model(name, __config__=config, **loose)  # type: ignore[call-overload]
        return model

    @cached_property
    def json_schema(self) -> dict[str, Any]:
        """JSON Schema of the keyword form of the arguments (``x-positional`` gives the order)."""
        schema = self.model.model_json_schema()
        schema.pop("title", None)
        schema["x-positional"] = self.positional
        if self.var_args is not None:
            schema["x-var-positional"] = self.var_args.name
        return schema

    # --- checking ----------------------------------------------------------------------------
    def validate(self, args: typing.Sequence[Any], kwargs: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        """Check JSON-like ``args``/``kwargs`` (as HTTP and the CLI receive them) and return them
        as the job gets them (a whole number given as ``2.0`` for an ``int`` becomes ``2``);
        :class:`InvalidArguments` naming the failing parameter."""
        named = self._named(args, kwargs)
        return self._whole(args, kwargs, named, self._check(named))

    def _whole(
        self, args: typing.Sequence[Any], kwargs: dict[str, Any], named: dict[str, Any], valid: BaseModel
    ) -> tuple[list[Any], dict[str, Any]]:
        values = {name: getattr(valid, name, None) for name in named}
        n = min(len(args), len(self.positional))
        positional = [as_validated(named[p], values[p]) for p in self.positional[:n]]
        return positional + list(args[n:]), {k: as_validated(named[k], values[k]) for k in kwargs}

    def encode(self, args: typing.Sequence[Any], kwargs: dict[str, Any]) -> tuple[typing.Sequence[Any], dict[str, Any]]:
        """Check Python ``args``/``kwargs`` and return them JSON-like, in the same shape (rich
        values of annotated parameters dumped); :class:`InvalidArguments` if they do not fit."""
        checks = self._scalars
        if checks is not None and not kwargs and self._required <= len(args) <= len(checks):
            for a, c in zip(args, checks, strict=False):  # a type test per argument, no pydantic
                if c is not None and type(a) not in c:
                    break
            else:
                return args, kwargs
        named = self._named(args, kwargs)
        for name in named.keys() & self.adapters.keys():
            try:
                named[name] = self.adapters[name].dump_python(named[name], mode="json", warnings=False)
            except (PydanticSerializationError, ValueError, TypeError) as e:
                raise self._error(name, "cannot_encode", f"cannot encode {truncate(named[name])}: {e}") from None
        return self._whole(args, kwargs, named, self._check(named))

    def _check(self, named: dict[str, Any]) -> BaseModel:
        try:
            body = orjson.dumps(named, default=_jsonable, option=orjson.OPT_NON_STR_KEYS)
            return self.model.model_validate_json(body, strict=True)
        except TypeError as e:  # orjson: a value with no JSON form
            raise InvalidArguments(
                self.function.name, [{"loc": ["args"], "type": "unserializable", "msg": str(e)}]
            ) from None
        except ValidationError as e:
            errors = [{"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]} for err in e.errors()]
            for err in errors:
                if err["type"] == "extra_forbidden":
                    err["msg"] = f"unexpected keyword argument; parameters are {', '.join(self.model.model_fields)}"
            raise InvalidArguments(self.function.name, errors) from None

    def _named(self, args: typing.Sequence[Any], kwargs: dict[str, Any]) -> dict[str, Any]:
        if len(args) > len(self.positional) and self.var_args is None:
            raise self._error(
                "args",
                "too_many_arguments",
                f"takes at most {len(self.positional)} positional argument(s), got {len(args)}",
            )
        named = dict(zip(self.positional, args, strict=False))
        for name in kwargs:
            if name in named:
                raise self._error(name, "multiple_values", "given both in args and in kwargs")
        named.update(kwargs)
        return named

    def _error(self, loc: str, type_: str, msg: str) -> InvalidArguments:
        return InvalidArguments(self.function.name, [{"loc": [loc], "type": type_, "msg": msg}])

    # --- in the worker -----------------------------------------------------------------------
    def decode(self, args: typing.Sequence[Any], kwargs: dict[str, Any]) -> tuple[typing.Sequence[Any], dict[str, Any]]:
        """Turn the encoded values of annotated parameters back into their types (a no-op when
        no parameter needs it); :class:`InvalidArguments` if a value does not fit."""
        if not self.adapters:
            return args, kwargs
        out = list(args)
        for i, name in enumerate(self.positional[: len(out)]):
            if name in self.adapters:
                out[i] = self._decode(name, out[i])
        return out, {k: self._decode(k, v) if k in self.adapters else v for k, v in kwargs.items()}

    def _decode(self, name: str, value: Any) -> Any:
        try:
            return self.adapters[name].validate_python(value)
        except ValidationError as e:
            errors = [{"loc": [name, *err["loc"]], "msg": err["msg"], "type": err["type"]} for err in e.errors()]
            raise InvalidArguments(self.function.name, errors) from None


def _jsonable(value: Any) -> Any:
    try:
        return to_jsonable_python(value)
    except PydanticSerializationError as e:
        raise TypeError(f"cannot encode {type(value).__name__} value {truncate(value)}: use JSON-like values") from e


def _hints(func: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func)
    except Exception:  # unresolvable string annotations: validate those parameters as Any
        return {}
