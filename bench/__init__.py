"""Benchmarks: asyncjobs' engine and plain arq side by side on one private redis-server.

Run ``python -m bench`` (full) or ``python -m bench --quick`` (smoke test, < 60 s).
"""
