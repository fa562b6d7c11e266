"""Example jobs: the demo served by ``asyncjobs dev`` and used by the docs. A production
``settings.py`` registers them only when ``ASYNCJOBS_EXAMPLES`` is on: anything enqueueable over
HTTP is attack surface.

Each shows one habit of a good job: small typed arguments, progress, idempotence, constant
memory, I/O through resources opened once per worker, and files read only from the configured
data directory (``ctx["data_dir"]``)."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import math
import os
import smtplib
from email.message import EmailMessage
from typing import Any

from arq.utils import timestamp_ms

from asyncjobs.context import JobContext
from asyncjobs.datafiles import data_dir_of
from asyncjobs.registry import job

logger = logging.getLogger(__name__)


@job(timeout=10)
async def count_words(ctx: JobContext, text: str) -> int:
    """Count the words of ``text``."""
    return len(text.split())


@job(timeout=30, retries=3)
async def send_email(ctx: JobContext, to: str, subject: str, body: str) -> dict[str, Any]:
    """Send an email. With ``ctx["smtp"]`` (host, port) configured it goes over SMTP in a
    thread; otherwise it is logged (dry run). Retried with backoff if the server fails."""
    if "@" not in to:
        raise ValueError(f"{to!r} is not an email address")
    smtp = ctx.get("smtp")
    if not smtp:
        ctx.log.info("dry-run email to %s: %s", to, subject[:80])
        return {"to": to, "delivered": False, "dry_run": True}
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = smtp.get("sender", "asyncjobs@localhost"), to, subject
    msg.set_content(body)

    def deliver() -> None:
        with smtplib.SMTP(smtp["host"], int(smtp.get("port", 25)), timeout=10) as s:
            s.send_message(msg)

    await asyncio.to_thread(deliver)
    return {"to": to, "delivered": True, "dry_run": False}


class _Column:
    __slots__ = ("maximum", "minimum", "name", "non_empty", "numeric", "total")

    def __init__(self, name: str) -> None:
        self.name, self.non_empty, self.numeric, self.total = name, 0, 0, 0.0
        self.minimum, self.maximum = math.inf, -math.inf

    def add(self, value: str) -> None:
        if value == "":
            return
        self.non_empty += 1
        try:
            x = float(value)
        except ValueError:
            return
        if math.isfinite(x):
            self.numeric += 1
            self.total += x
            self.minimum, self.maximum = min(self.minimum, x), max(self.maximum, x)

    def summary(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "non_empty": self.non_empty, "numeric": self.numeric}
        if self.numeric:
            d.update(min=self.minimum, max=self.maximum, mean=self.total / self.numeric)
        return d


@job(timeout=3600)
async def process_csv(ctx: JobContext, path: str, progress_every_s: float = 0.5) -> dict[str, Any]:
    """Stream the CSV file at ``path`` (any size, constant memory) and return row and column
    statistics, reporting progress by bytes read. ``path`` is relative to the data directory
    (``ctx["data_dir"]``); nothing outside it can be read."""
    raw = data_dir_of(ctx.get("data_dir")).open(path)
    with raw, io.TextIOWrapper(raw, encoding="utf-8", newline="") as f:
        size = os.fstat(raw.fileno()).st_size
        await ctx.progress(0, f"reading {os.path.basename(path)}")
        rows = 0
        last = timestamp_ms()
        reader = csv.reader(f)
        header = next(reader, None)
        columns = [_Column(name) for name in header or []]
        for row in reader:
            rows += 1
            for col, value in zip(columns, row, strict=False):
                col.add(value)
            if rows % 5000 == 0:
                await asyncio.sleep(0)  # let other jobs and lease renewal run
                if timestamp_ms() - last >= progress_every_s * 1000:
                    last = timestamp_ms()
                    await ctx.progress(min(99.0, 100.0 * raw.tell() / max(size, 1)), f"{rows} rows", rows=rows)
    await ctx.progress(100, f"{rows} rows", rows=rows)
    return {"rows": rows, "columns": [c.summary() for c in columns]}


@job(timeout=600, retries=1)
async def generate_report(ctx: JobContext, title: str, sections: int = 3, step_seconds: float = 0.2) -> dict[str, Any]:
    """Build a report in several steps (fetch, aggregate, render per section), with progress."""
    parts = []
    for i in range(sections):
        await asyncio.sleep(step_seconds)  # stands in for a query or an API call
        parts.append(f"## {title}: section {i + 1}")
        await ctx.progress(100 * (i + 1) / sections, f"section {i + 1}/{sections}")
    return {"title": title, "sections": sections, "text": "\n".join(parts)}


@job(timeout=60)
async def cleanup(ctx: JobContext) -> dict[str, Any]:
    """A periodic maintenance job (run by cron): counts dead letters and logs a heartbeat."""
    from asyncjobs import keys

    dead = await ctx.redis.zcard(keys.DEAD)
    ctx.log.info("cleanup tick: %d dead letters", dead)
    return {"dead_letters": dead, "at_ms": timestamp_ms()}


FUNCTIONS = [count_words, send_email, process_csv, generate_report, cleanup]
