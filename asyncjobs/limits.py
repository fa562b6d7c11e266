"""Flow control: fleet-wide rate and concurrency limits per function (and per key), enforced in
the claim, and their release when a job stops holding a slot.

How it works (all of it inside the Lua calls that claim and end jobs, so a crash between two
calls never leaks a slot or lets a job through twice):

* **concurrency** — a limit ``L`` (a function, or a function and a key) has a zset of holders
  ``asyncjobs:slots:<L>`` (job id scored by its lease expiry, renewed with the lease). The claim
  takes a slot if fewer than ``max_concurrency`` are held; otherwise the job is *parked*: its
  queue score moves to :data:`PARKED_SCORE` (out of every worker's due range) and it is kept,
  with the score it had, in ``asyncjobs:parked:slots:<L>``. Whatever releases a slot (a job's
  end, a retry, a lapsed lease) puts the earliest parked job back at its old score, in the same
  call, and publishes its queue's wake-up. Holders whose lease lapsed without a release are
  pruned when the limit is full.
* **rate** — a GCRA bucket per limit (``asyncjobs:rate:<L>``: the theoretical arrival time
  ``tat``). A job over the rate becomes the limit's *scheduled* job, re-scored to the time the
  next token is due, and later ones are parked behind it; when the scheduled job takes its
  token, the next parked job is scheduled for the token after. So one job per limit sits in its
  queue while the rest wait parked: no worker polls for them, and jobs of other functions
  behind them are claimed as usual.
* **pause** — a paused queue is not read by the claim; a paused function's jobs are parked in
  ``asyncjobs:parked:paused:<function>`` until it is resumed (:mod:`asyncjobs.pausing`).

A waiting job's state hash holds why it waits (``waiting``: ``rate_limited``,
``at_concurrency`` or ``paused``), where (``wait``: the parked zset or the rate key) and its
queue (``wait_q``). Keys of idle limits vanish: holder and parked zsets when empty, a rate
bucket :data:`RATE_IDLE_MS` after its last token.

The limits are known to the workers that register the functions (``@job(rate_limit=...,
max_concurrency=...)``); each claim is sent its worker's table (:func:`limits_table`). Per-key
limits read the key from the job's payload (``rk``/``ck``, set at enqueue); a job enqueued by a
plain arq client has none and counts against the function's own limit.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from asyncjobs import keys
from asyncjobs.errors import ConfigError, truncate
from asyncjobs.lua import tagged, with_constants

if TYPE_CHECKING:
    from asyncjobs.registry import JobFunction

#: the queue score of a parked job: far beyond any run-at time (year 2255), so it is never due
PARKED_SCORE = 9_000_000_000_000_000
#: a rate bucket is dropped this long after its last token was due
RATE_IDLE_MS = 60_000

KeyFunction = Callable[..., Any]

_RATE_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([smhd])\s*(?::\s*(\d+)\s*)?$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_KEY_RE = re.compile(r"^\S{1,200}$")


@dataclass(frozen=True)
class RateLimit:
    """``count`` job starts per ``period_s`` seconds, fleet-wide, spaced evenly; ``burst``
    starts may happen at once after an idle spell (1: strictly spaced)."""

    count: int
    period_s: float
    burst: int = 1

    @property
    def interval_ms(self) -> float:
        return self.period_s * 1000 / self.count

    @classmethod
    def parse(cls, spec: str, burst: int | None = None) -> RateLimit:
        """``"100/m"``, ``"10/s"``, ``"5/h"``, ``"2/d"``, ``"30/5m"`` (30 per 5 minutes);
        ``"100/m:20"`` or ``burst=20`` for a burst."""
        m = _RATE_RE.match(spec) if isinstance(spec, str) else None
        if m is None or int(m[1]) <= 0 or (m[2] and int(m[2]) <= 0):
            raise ConfigError(
                f"rate_limit {truncate(repr(spec))} is not a rate: write COUNT/UNIT with unit s, m, h or d, "
                "e.g. '100/m', '10/s', '30/5m', and an optional burst as '100/m:20'",
                key="rate_limit",
            )
        if m[4] is not None and burst is not None:
            raise ConfigError("give the burst once: in rate_limit ('100/m:20') or as burst=", key="burst")
        b = int(m[4]) if m[4] is not None else (1 if burst is None else burst)
        if isinstance(b, bool) or not isinstance(b, int) or b < 1:
            raise ConfigError(f"burst {b!r} must be a whole number >= 1", key="burst")
        return cls(int(m[1]), int(m[2] or 1) * _UNIT_S[m[3]], b)

    def __str__(self) -> str:
        return f"{self.count}/{self.period_s:g}s" + (f":{self.burst}" if self.burst > 1 else "")


def check_max_concurrency(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"max_concurrency {value!r} must be a whole number >= 1", key="max_concurrency")
    return value


def check_limit_key(value: object, what: str) -> str:
    """A per-key limit's key: 1-200 characters without whitespace (anything else is stringified)."""
    key = value if isinstance(value, str) else str(value)
    if not _KEY_RE.fullmatch(key):
        raise ConfigError(f"{what} {truncate(repr(value))} is not valid: use 1-200 characters, no spaces", key=what)
    return key


def derive_key(fn: KeyFunction | None, given: str | None, args: Any, kwargs: Any, what: str) -> str | None:
    """The job's limit key: the one given at enqueue, else the function's key function applied
    to the job's arguments (``None``: no key)."""
    if given is not None:
        return check_limit_key(given, what)
    if fn is None:
        return None
    value = fn(*args, **kwargs)
    return None if value is None else check_limit_key(value, what)


def function_limits(f: JobFunction[Any, Any]) -> dict[str, Any] | None:
    """The claim's view of one function's limits (``None``: unlimited)."""
    o = f.opts
    if o.rate_limit is None and o.max_concurrency is None:
        return None
    entry: dict[str, Any] = {}
    if o.max_concurrency is not None:
        entry["c"] = o.max_concurrency
    if o.rate_limit is not None:
        t = o.rate_limit.interval_ms
        # claims are timed in whole ms: a rate above 1,000/s may start its share of a ms at once
        entry["r"] = [t, max((o.rate_limit.burst - 1) * t, 1.0 - t)]
    return entry


def limits_config(functions: Iterable[JobFunction[Any, Any]]) -> dict[str, dict[str, Any]]:
    """Every limited function's limits, by name, as the claim reads them."""
    return {f.name: lim for f in functions if (lim := function_limits(f)) is not None}


def limits_table(functions: Iterable[JobFunction[Any, Any]]) -> str:
    """The JSON table the claim is sent (``""`` when nothing is limited: the claim skips it)."""
    config = limits_config(functions)
    return json.dumps(config, separators=(",", ":")) if config else ""


def describe(f: JobFunction[Any, Any]) -> dict[str, Any]:
    """A limited function's limits for people (the API and the worker's registration)."""
    o = f.opts
    return {
        "rate_limit": None if o.rate_limit is None else str(o.rate_limit),
        "rate_per_s": None if o.rate_limit is None else o.rate_limit.count / o.rate_limit.period_s,
        "burst": None if o.rate_limit is None else o.rate_limit.burst,
        "rate_keyed": o.rate_key is not None,
        "max_concurrency": o.max_concurrency,
        "concurrency_keyed": o.concurrency_key is not None,
    }


_CONSTANTS: dict[str, str | int] = {
    "STATE": keys.state(""),
    "SLOTS": tagged(keys.slots("")),
    "RATE": tagged(keys.rate("")),
    "PARKED": tagged(keys.parked("")),
    "WAKE": keys.wake(""),
    "ARQ_QUEUE": keys.queue(keys.DEFAULT_QUEUE),
    "DEFAULT": keys.DEFAULT_QUEUE,
    "STATE_TTL": keys.STATE_TTL_S,
}

# Lua: ``lim_unpark(pk, n)`` puts up to n jobs parked in zset ``pk`` back in their queues at
# the scores they had and wakes the queues (``lim_wake(q)``: the wake channel of queue key q,
# as :func:`asyncjobs.keys.queue_name_of` names it). -> how many were put back
LUA_PARKING = with_constants(
    """
local function lim_wake(q)
  local name
  local short = q:sub(#$ARQ_QUEUE + 2)
  if q == $ARQ_QUEUE then name = $DEFAULT
  elseif q:sub(1, #$ARQ_QUEUE + 1) == $ARQ_QUEUE .. ':' and short ~= '' and not short:find(':', 1, true)
      and short ~= $DEFAULT then name = short
  elseif q:find(':', 1, true) and q:sub(1, 1) ~= ':' then name = q
  else name = ':' .. q end
  return $WAKE .. name
end
local function lim_unpark(pk, n)
  local done = 0
  while done < n do
    local top = redis.call('ZPOPMIN', pk)
    if #top == 0 then break end
    local sk = $STATE .. top[1]
    local q = redis.call('HGET', sk, 'wait_q')
    redis.call('HDEL', sk, 'waiting', 'wait', 'wait_q')
    if q and redis.call('ZADD', q, 'XX', 'CH', top[2], top[1]) == 1 then
      redis.call('PUBLISH', lim_wake(q), top[2])
      done = done + 1
    end
  end
  return done
end
""",
    **_CONSTANTS,
)

# Lua: ``limits_release(id, q)``, called whenever a job stops holding what its claim took (its
# end, a retry, a lapsed lease) and when a waiting job leaves its queue (an abort): frees its
# slots, each bringing the earliest job parked on that limit back, and takes it off any waiting
# list. Idempotent: a second call finds nothing held.
LUA_RELEASE = LUA_PARKING + with_constants(
    """
local function lim_unwait(id, sk, w)
  redis.call('HDEL', sk, 'waiting', 'wait', 'wait_q')
  if w:sub(1, #$RATE) == $RATE then
    if redis.call('HGET', w, 'sched') == id then
      redis.call('HDEL', w, 'sched')
      lim_unpark($PARKED .. 'rate:' .. w:sub(#$RATE + 1), 1)
    end
  else
    redis.call('ZREM', w, id)
  end
end
local function limits_release(id, q)
  local sk = $STATE .. id
  local f = redis.call('HMGET', sk, 'hold', 'wait')
  if f[1] then
    redis.call('HDEL', sk, 'hold')
    for ck in string.gmatch(f[1], '%S+') do
      if redis.call('ZREM', ck, id) == 1 then lim_unpark($PARKED .. 'slots:' .. ck:sub(#$SLOTS + 1), 1) end
    end
  end
  if f[2] then lim_unwait(id, sk, f[2]) end
end
""",
    **_CONSTANTS,
)

# Lua: ``lim_gate(id, q, origin, fn, cfg, d, now, lease, paused)`` decides
# at claim time whether a job (in-progress marker already taken) may start. True: it may (a
# slot and a token are taken). False: it was parked or scheduled for its next token, with its
# reason in its state hash; the caller drops the marker. ``cfg``: the function's limits (or
# nil), ``d``: its decoded payload (for the keys), ``paused``: the paused hash as a table.
LUA_GATE = LUA_PARKING + with_constants(
    """
-- limits found full in this call (a backlog of one function is parked without reading its
-- limit again for each job): slot zset or rate key -> true
local lim_full = {}
local function lim_park(id, q, origin, pk, reason)
  redis.call('ZADD', q, 'XX', $PARKED_SCORE, id)
  redis.call('ZADD', pk, origin, id)
  local sk = $STATE .. id
  redis.call('HSET', sk, 'waiting', reason, 'wait', pk, 'wait_q', q)
  redis.call('EXPIRE', sk, $STATE_TTL)
  return false
end
local function lim_lid(fn, key)
  if type(key) == 'string' and key ~= '' then return fn .. '#' .. key end
  return fn
end
-- a full limit: drop holders whose lease lapsed and whose marker is gone (their release was
-- lost); -> how many were dropped
local function lim_prune(ck, now)
  local freed = 0
  for _, h in ipairs(redis.call('ZRANGEBYSCORE', ck, '-inf', now, 'LIMIT', 0, 100)) do
    if redis.call('EXISTS', $IN_PROGRESS .. h) == 0 then
      redis.call('ZREM', ck, h)
      freed = freed + 1
    end
  end
  return freed
end
local function lim_promote(rk, lid, at)
  local pk = $PARKED .. 'rate:' .. lid
  while true do
    local top = redis.call('ZPOPMIN', pk)
    if #top == 0 then redis.call('HDEL', rk, 'sched') return end
    local sk = $STATE .. top[1]
    local q = redis.call('HGET', sk, 'wait_q')
    if q and redis.call('ZADD', q, 'XX', 'CH', at, top[1]) == 1 then
      redis.call('HSET', rk, 'sched', top[1])
      redis.call('HSET', sk, 'wait', rk)
      return
    end
    redis.call('HDEL', sk, 'waiting', 'wait', 'wait_q')
  end
end
-- -> true: a token was taken; false: the job now waits for one
local function lim_rate(id, q, origin, fn, r, key, now)
  local lid = lim_lid(fn, key)
  local rk = $RATE .. lid
  if lim_full[rk] then return lim_park(id, q, origin, $PARKED .. 'rate:' .. lid, 'rate_limited') end
  local h = redis.call('HMGET', rk, 'tat', 'sched')
  local tat = math.max(tonumber(h[1]) or now, now)
  local live = h[2] and h[2] ~= id and redis.call('HGET', $STATE .. h[2], 'wait') == rk
  if tat - now > r[2] then
    lim_full[rk] = true  -- (its scheduled job is live, or is this one from now on)
    if live then return lim_park(id, q, origin, $PARKED .. 'rate:' .. lid, 'rate_limited') end
    local sk = $STATE .. id
    redis.call('ZADD', q, 'XX', math.ceil(tat - r[2]), id)
    redis.call('HSET', rk, 'sched', id)
    redis.call('HSET', sk, 'waiting', 'rate_limited', 'wait', rk, 'wait_q', q)
    redis.call('EXPIRE', sk, $STATE_TTL)
    return false
  end
  tat = tat + r[1]
  redis.call('HSET', rk, 'tat', string.format('%.3f', tat))
  redis.call('PEXPIREAT', rk, math.ceil(tat) + $RATE_IDLE_MS)
  if not live then lim_promote(rk, lid, math.ceil(math.max(tat - r[2], now))) end
  return true
end
local function lim_gate(id, q, origin, fn, cfg, d, now, lease, paused)
  if paused['f:' .. fn] then return lim_park(id, q, origin, $PARKED .. 'paused:' .. fn, 'paused') end
  if not cfg then return true end
  local ck, freed = nil, 0
  if cfg.c then
    local lid = lim_lid(fn, d.ck)
    ck = $SLOTS .. lid
    if lim_full[ck] then return lim_park(id, q, origin, $PARKED .. 'slots:' .. lid, 'at_concurrency') end
    if not redis.call('ZSCORE', ck, id) then  -- (held: this job's earlier run lapsed unreleased)
      local n = redis.call('ZCARD', ck)
      if n >= cfg.c then
        freed = lim_prune(ck, now)
        n = n - freed
      end
      if n >= cfg.c then
        lim_full[ck] = true
        return lim_park(id, q, origin, $PARKED .. 'slots:' .. lid, 'at_concurrency')
      end
    end
  end
  if cfg.r and not lim_rate(id, q, origin, fn, cfg.r, d.rk, now) then return false end
  local sk = $STATE .. id
  redis.call('HDEL', sk, 'waiting', 'wait', 'wait_q')
  if ck then
    redis.call('ZADD', ck, now + lease, id)
    redis.call('HSET', sk, 'hold', ck)
    if freed > 1 then lim_unpark($PARKED .. 'slots:' .. ck:sub(#$SLOTS + 1), freed - 1) end
  end
  return true
end
""",
    PARKED_SCORE=PARKED_SCORE,
    RATE_IDLE_MS=RATE_IDLE_MS,
    IN_PROGRESS=keys.in_progress(""),
    **_CONSTANTS,
)

# Renewing a lease renews the job's slots too (KEYS: slot zsets, ARGV: expiry ms, job id):
# a holder's score is its lease expiry, so a lapsed one can be told from a live one.
LUA_RENEW_HOLD = with_constants(
    """
local function lim_renew(id, at)
  local h = redis.call('HGET', $STATE .. id, 'hold')
  if h then
    for ck in string.gmatch(h, '%S+') do redis.call('ZADD', ck, 'XX', at, id) end
  end
end
""",
    STATE=keys.state(""),
)
