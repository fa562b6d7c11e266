"""CLI commands for flow control: ``asyncjobs queue pause|resume NAME``, ``asyncjobs function
pause|resume NAME`` and ``asyncjobs limits``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from asyncjobs import pausing

if TYPE_CHECKING:
    from asyncjobs.cli import Ctx


@click.group("queue")
def queue_group() -> None:
    """Pause or resume a queue."""


@queue_group.command("pause")
@click.argument("name")
@click.pass_obj
def pause_queue(ctx: Ctx, name: str) -> None:
    """Stop workers from starting jobs of queue NAME (running jobs finish; queued jobs stay)."""
    from asyncjobs.cli import run

    async def go() -> None:
        async with ctx.client() as client:
            await client.pause(queue=name)
        click.echo(f"queue {name} paused")

    run(ctx, go)


@queue_group.command("resume")
@click.argument("name")
@click.pass_obj
def resume_queue(ctx: Ctx, name: str) -> None:
    """Let workers start jobs of queue NAME again, at once."""
    from asyncjobs.cli import run

    async def go() -> None:
        async with ctx.client() as client:
            await client.resume(queue=name)
        click.echo(f"queue {name} resumed")

    run(ctx, go)


@click.group("function")
def function_group() -> None:
    """Pause or resume a job function."""


@function_group.command("pause")
@click.argument("name")
@click.pass_obj
def pause_function(ctx: Ctx, name: str) -> None:
    """Stop workers from starting jobs of function NAME: they wait in their queues."""
    from asyncjobs.cli import run

    async def go() -> None:
        async with ctx.client() as client:
            if client.registry is not None:
                client.registry.get(name)  # an unknown name is a usage error
            await client.pause(function=name)
        click.echo(f"function {name} paused")

    run(ctx, go)


@function_group.command("resume")
@click.argument("name")
@click.pass_obj
def resume_function(ctx: Ctx, name: str) -> None:
    """Let jobs of function NAME start again: its waiting jobs are due at once."""
    from asyncjobs.cli import run

    async def go() -> None:
        async with ctx.client() as client:
            n = await pausing.resume_function(client.redis, name)
        click.echo(f"function {name} resumed ({n} waiting job(s) due again)")

    run(ctx, go)


@click.command("limits")
@click.pass_obj
def limits_command(ctx: Ctx) -> None:
    """Show each limited or paused function: its limits and their use now."""
    from asyncjobs.cli import run

    async def go() -> None:
        async with ctx.client() as client:
            states = await client.limits()
            flags = await pausing.paused(client.redis)
        for s in states:
            parts = [f"{s.function:<24}"]
            if s.max_concurrency is not None:
                keyed = " per key" if s.concurrency_keyed else ""
                parts.append(f"running={s.running}/{s.max_concurrency}{keyed} at_concurrency={s.at_concurrency}")
            if s.rate_limit is not None:
                keyed = " per key" if s.rate_keyed else ""
                parts.append(f"rate={s.rate_limit}{keyed} tokens={s.tokens} rate_limited={s.rate_limited}")
            if s.paused:
                parts.append(f"PAUSED ({s.paused_jobs} waiting)")
            click.echo(" ".join(parts))
        if flags["queues"]:
            click.echo(f"paused queues: {', '.join(flags['queues'])}")
        if not states and not flags["queues"]:
            click.echo("no limits and nothing paused")

    run(ctx, go)
