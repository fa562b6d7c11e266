"""JobContext: arq's per-job ctx dict with typed accessors, written through to that dict."""

from __future__ import annotations

import pytest

from asyncjobs.context import JobContext


def test_writes_reach_the_ctx_dict_it_was_built_from() -> None:
    arq_ctx: dict[str, object] = {"job_id": "j", "job_try": 1, "gone": 1, "popped": 2}
    ctx = JobContext(arq_ctx)
    ctx["rows"] = 3
    ctx.note = "attr"
    ctx.setdefault("total", 6)
    ctx.update({"a": 1}, b=2)
    del ctx["gone"]
    assert ctx.pop("popped") == 2
    assert arq_ctx == {"job_id": "j", "job_try": 1, "rows": 3, "note": "attr", "total": 6, "a": 1, "b": 2}
    assert ctx.note == "attr" and ctx["note"] == "attr"


def test_typed_accessors_are_read_only() -> None:
    ctx = JobContext({"job_id": "j"})
    with pytest.raises(AttributeError, match="read-only"):
        ctx.job_id = "other"  # type: ignore[misc]
    assert ctx.job_id == "j"
