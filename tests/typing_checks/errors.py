"""Misuse that ``mypy --strict`` must reject, each on a line marked ``# error`` (and only
those lines: tests/test_typing.py compares the line numbers mypy reports)."""

from __future__ import annotations

from asyncjobs import Client, JobContext, JobHandle, job


@job
async def add(ctx: JobContext, a: int, b: int = 1) -> int:
    return a + b


async def misuse(client: Client) -> None:
    await client.enqueue(add, "one", 2)  # error
    await client.enqueue(add, 1, b="two")  # error
    await client.enqueue(add)  # error
    await client.enqueue(add, 1, 2, 3)  # error
    await client.enqueue(add, 1, c=3)  # error
    handle: JobHandle[str] = await client.enqueue(add, 1)  # error
    text: str = await (await client.enqueue(add, 1)).result()  # error
    await client.enqueue(add.options(queue=1), 1)  # error
    await client.enqueue(add, 1, 2)  # fine: the checks above are not blanket failures
    print(handle, text)
