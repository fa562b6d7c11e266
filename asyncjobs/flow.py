"""Flow control at enqueue: dedupe, debounce and throttle, decided in Redis by one script.

Each is an enqueue option (``f.options(...)``, ``enqueue_call(...)``, the HTTP body, the CLI)
that names a *window* and a *key*; the key's Redis entry (:func:`asyncjobs.keys.flow`) holds the
id of the job that holds the window and expires with it, so memory stays bounded.

- **dedupe** (``dedupe_for=S``, optional ``dedupe_key``): the first enqueue creates the job and
  holds the key for ``S`` seconds *from that enqueue*; every enqueue with the same key inside the
  window returns that job's handle instead of a new job. Without ``dedupe_key`` the key is a hash
  of the function name and its encoded arguments.
- **debounce** (``debounce=S``, optional ``dedupe_key``): the job is deferred by ``S``; an enqueue
  with the same key while that job has not started replaces its arguments and pushes its start
  back to ``now + S``; once it has started, a new job is enqueued. Without a key: one pending
  job per function.
- **throttle** (``throttle=S``, optional ``throttle_key``): at most one job is accepted per key
  per ``S`` seconds (from the accepted enqueue); the others are dropped and get the handle of the
  job that holds the window, marked ``throttled``. Without a key: one per function.

Why dedupe's window runs from the enqueue and not until the job ends: it is one ``SET NX PX``
in the enqueue script and nothing else, so no path that ends a job (success, failure, abort,
expiry, a killed worker, a plain arq worker that knows nothing of it) has to release it, and a
crash can never leave a key behind that blocks enqueues for ever. "Until the job ends" is
already what a fixed ``job_id`` gives (an id is refused while its job is queued, running or
keeps a result).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import orjson
from redis.exceptions import NoScriptError

from asyncjobs import keys, redis_url, scripts
from asyncjobs.enqueue_line import LineFailed
from asyncjobs.errors import ConfigError, NotReplicated, truncate

#: the longest window and the longest key a flow option may name
MAX_WINDOW_S = 366 * 24 * 3600.0
MAX_KEY_LEN = 200

DEDUPE, DEBOUNCE, THROTTLE = "dedupe", "debounce", "throttle"
DEBOUNCE_HOLD_MS = 24 * 3600 * 1000
_CODE = {DEDUPE: "d", DEBOUNCE: "b", THROTTLE: "t"}

# what the enqueue script answers: {code, job id}
CREATED, TAKEN, DEDUPLICATED, DEBOUNCED, THROTTLED = 1, 0, 2, 3, 4
#: a handle's :attr:`~asyncjobs.client.JobHandle.admission`, by script answer
ADMISSION = {CREATED: "created", DEDUPLICATED: "deduplicated", DEBOUNCED: "debounced", THROTTLED: "throttled"}


@dataclass(frozen=True)
class Flow:
    """One flow-control option of an enqueue, checked when built (:func:`flow_options`).
    ``key`` is the caller's key, or ``None``: dedupe then hashes the arguments, debounce and
    throttle use the function (one window per function)."""

    mode: str
    window: float
    key: str | None = None

    def redis_key(self, function: str, args: Any, kwargs: dict[str, Any], tag: str = "") -> str:
        """The window's key, for the jobs of queues of hash tag ``tag`` (``""``: untagged)."""
        if self.key is not None:
            return keys.flow(self.mode, function, "k:" + self.key, tag)
        if self.mode == DEDUPE:
            return keys.flow(self.mode, function, "h:" + arguments_hash(function, args, kwargs), tag)
        return keys.flow(self.mode, function, "*", tag)

    def argv(self, job_ttl_ms: int) -> list[Any]:
        """The script's extra arguments: the mode, then how long the key is held (ms): the
        window, or for debounce as long as the pending job itself may live (a job without an
        expiry: its debounce window plus a day, as long as a waiting job is usually debounced)."""
        window_ms = max(1, round(self.window * 1000))
        if self.mode != DEBOUNCE:
            return [_CODE[self.mode], window_ms]
        return [_CODE[self.mode], job_ttl_ms or window_ms + DEBOUNCE_HOLD_MS]


def arguments_hash(function: str, args: Any, kwargs: dict[str, Any]) -> str:
    """A hash of the function name and its arguments as encoded for the payload (so equal
    calls hash equal however they were built): canonical JSON, keys sorted."""
    blob = orjson.dumps(
        [function, list(args), kwargs], option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=repr
    )
    return hashlib.blake2b(blob, digest_size=16).hexdigest()


def _window(value: Any, what: str) -> float:
    s = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(s, bool) or not isinstance(s, int | float) or not 0 < s <= MAX_WINDOW_S:
        raise ConfigError(
            f"{what} {truncate(repr(value))} is not a window: give seconds > 0 (at most 366 days) or a timedelta",
            key=what,
        )
    return float(s)


def _key(value: Any, what: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_KEY_LEN:
        raise ConfigError(f"{what} {truncate(repr(value))} is not valid: give a string of 1-{MAX_KEY_LEN} characters")
    return value


def flow_options(
    *,
    dedupe_key: str | None = None,
    dedupe_for: Any = None,
    debounce: Any = None,
    throttle: Any = None,
    throttle_key: str | None = None,
) -> Flow | None:
    """The :class:`Flow` these options ask for (``None`` for none), or :class:`ConfigError`
    saying what does not fit: one of dedupe_for / debounce / throttle at most, each key only
    with its own option."""
    windows = (("dedupe_for", dedupe_for), ("debounce", debounce), ("throttle", throttle))
    given = [name for name, v in windows if v is not None]
    if len(given) > 1:
        raise ConfigError(f"use one of dedupe_for, debounce and throttle, not {' and '.join(given)}", key=given[1])
    if throttle_key is not None and throttle is None:
        raise ConfigError("throttle_key needs throttle=seconds: the window it holds", key="throttle_key")
    if dedupe_key is not None and dedupe_for is None and debounce is None:
        raise ConfigError(
            "dedupe_key needs dedupe_for=seconds (or debounce=seconds): the window it holds", key="dedupe_key"
        )
    if dedupe_for is not None:
        return Flow(DEDUPE, _window(dedupe_for, "dedupe_for"), _key(dedupe_key, "dedupe_key"))
    if debounce is not None:
        return Flow(DEBOUNCE, _window(debounce, "debounce"), _key(dedupe_key, "dedupe_key"))
    if throttle is not None:
        return Flow(THROTTLE, _window(throttle, "throttle"), _key(throttle_key, "throttle_key"))
    return None


async def run(broker: Any, calls: list[tuple[list[str], list[Any]]]) -> list[tuple[int, str]]:
    """Run the flow enqueue script once per (keys, argv), in one round trip (on the broker's
    enqueue line when it is free, as a plain enqueue is): ``(answer, job id)`` for each. After
    a lost connection the calls are sent again through the pool, and an answer naming the
    call's own id (its first try reached Redis) counts as :data:`CREATED`."""
    script = getattr(broker, "_asyncjobs_flow", None)
    if script is None:
        script = broker._asyncjobs_flow = broker.register_script(scripts.ENQUEUE_FLOW)
    line = broker._line
    if broker.durable or line is None or line.busy:
        replies = await _pool(broker, script, calls)
    else:
        try:
            replies = await line.evalsha(script.sha, calls)
            if any(isinstance(r, NoScriptError) for r in replies):
                script.sha = await broker.script_load(script.script)
                replies = await line.evalsha(script.sha, calls)
        except LineFailed:
            answers = _answers(await _pool(broker, script, calls))
            return [
                (CREATED if code != CREATED and holder == argv[0] else code, holder)
                for (_, argv), (code, holder) in zip(calls, answers, strict=True)
            ]
    return _answers(replies)


async def _pool(broker: Any, script: Any, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
    """EVALSHA per call through the pool in one pipeline (and ``WAIT 1`` for a durable broker);
    a script Redis does not know yet is loaded and the pipeline sent again."""
    for attempt in (1, 2):
        async with broker.pipeline(transaction=False) as pipe:
            for key_list, argv in calls:
                # (EVALSHA as a command: a cluster pipeline has no evalsha method, and routes
                # the command by its first key)
                pipe.execute_command("EVALSHA", script.sha, len(key_list), *key_list, *argv)
            if broker.durable:
                pipe.execute_command("WAIT", 1, max(1, int(broker.durable * 1000)))
            replies = await pipe.execute(raise_on_error=False)
        if attempt == 1 and any(isinstance(r, NoScriptError) for r in replies):
            script.sha = await broker.script_load(script.script)
            continue
        break
    if broker.durable and int(replies.pop()) < 1:
        raise NotReplicated(redis_url.mask(broker.url), broker.durable, [argv[0] for _, argv in calls])
    return list(replies)


def _answers(replies: list[Any]) -> list[tuple[int, str]]:
    out = []
    for r in replies:
        if isinstance(r, Exception):
            raise r
        code, holder = r
        out.append((int(code), holder.decode() if isinstance(holder, bytes) else str(holder)))
    return out
