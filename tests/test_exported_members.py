"""``asyncjobs.__all__`` is sorted, complete and documented."""

from __future__ import annotations

import inspect

import asyncjobs


def test_all_is_sorted():
    assert asyncjobs.__all__ == sorted(asyncjobs.__all__)


def test_all_is_complete():
    public = {
        name
        for name, value in vars(asyncjobs).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "logging"
    }
    assert public == set(asyncjobs.__all__)


def test_every_export_exists_and_has_a_docstring():
    for name in asyncjobs.__all__:
        value = getattr(asyncjobs, name)
        assert inspect.getdoc(value), f"asyncjobs.{name} has no docstring"
        if hasattr(value, "__module__"):
            assert value.__module__.startswith("asyncjobs."), name
