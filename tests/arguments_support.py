"""Jobs whose parameters have rich annotations, and a settings module for the CLI
(``asyncjobs --settings arguments_support``): each job returns the type it received and a
value computed from it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from uuid import UUID

from pydantic import BaseModel

from asyncjobs import Registry, job
from asyncjobs.examples import count_words
from settings import SETTINGS  # noqa: F401 - the CLI reads it from this module


class Point(BaseModel):
    x: int
    y: int


@dataclass
class Span:
    start: int
    end: int


@job
async def takes_model(ctx, p: Point) -> list[object]:
    return [type(p).__name__, p.x + p.y]


@job
async def takes_dataclass(ctx, s: Span) -> list[object]:
    return [type(s).__name__, s.end - s.start]


@job
async def takes_datetime(ctx, when: datetime) -> list[object]:
    return [type(when).__name__, when.year]


@job
async def takes_uuid(ctx, u: UUID) -> list[object]:
    return [type(u).__name__, u.version]


@job
async def takes_decimal(ctx, d: Decimal) -> list[object]:
    return [type(d).__name__, str(d * 2)]


@job
async def takes_models(ctx, ps: list[Point], *, scale: Decimal = Decimal(1)) -> list[object]:
    return [type(ps[0]).__name__, str(sum(p.x for p in ps) * scale)]


FUNCTIONS = [takes_model, takes_dataclass, takes_datetime, takes_uuid, takes_decimal, takes_models, count_words]
REGISTRY = Registry(FUNCTIONS)

U = UUID("12345678-1234-4678-9234-567812345678")
#: (function, Python value, its JSON form, the job's result)
CASES = [
    (takes_model, Point(x=1, y=2), {"x": 1, "y": 2}, ["Point", 3]),
    (takes_dataclass, Span(3, 10), {"start": 3, "end": 10}, ["Span", 7]),
    (takes_datetime, datetime(2031, 5, 6, 7, 8, 9), "2031-05-06T07:08:09", ["datetime", 2031]),
    (takes_uuid, U, str(U), ["UUID", 4]),
    (takes_decimal, Decimal("1.10"), "1.10", ["Decimal", "2.20"]),
    (takes_models, [Point(x=1, y=0), Point(x=4, y=0)], [{"x": 1, "y": 0}, {"x": 4, "y": 0}], ["Point", "5"]),
]
