"""Job tracebacks as the API shows them: file paths relative to ``site-packages``, the
standard library or the working directory, so the API does not reveal where and how the
workers are installed (``ASYNCJOBS_SHOW_TRACEBACK_PATHS=true`` keeps them whole)."""

from __future__ import annotations

import os
import re
from typing import Any

FILE_LINE = re.compile(r'(File ")([^"\n]+)(")')
# the package root inside an installation: everything up to it is the machine's business
PACKAGE_ROOT = re.compile(r"^.*/(?:site-packages|dist-packages)/|^.*/lib/python\d+(?:\.\d+)?/")


def relative_path(path: str, cwd: str | None = None) -> str:
    """``path`` without the directories that locate the installation."""
    if not path.startswith(("/", "\\")) and not re.match(r"^[A-Za-z]:[\\/]", path):
        return path  # already relative, or "<string>"-like
    path = path.replace("\\", "/")
    stripped = PACKAGE_ROOT.sub("", path, count=1)
    if stripped != path:
        return stripped
    base = (cwd or os.getcwd()).replace("\\", "/").rstrip("/") + "/"
    if path.startswith(base):
        return path[len(base) :]
    parts = path.rstrip("/").split("/")
    return ".../" + "/".join(parts[-2:])


def relative_traceback(text: str) -> str:
    """A formatted traceback with each ``File "..."`` path made relative."""
    return FILE_LINE.sub(lambda m: m.group(1) + relative_path(m.group(2)) + m.group(3), text)


def scrub_record(body: dict[str, Any], *, full_paths: bool = False) -> dict[str, Any]:
    """A job record's dict with its error traceback's paths made relative (in place)."""
    error = body.get("error")
    if not full_paths and isinstance(error, dict) and isinstance(error.get("traceback"), str):
        body["error"] = {**error, "traceback": relative_traceback(error["traceback"])}
    return body
