"""Every Redis key and channel asyncjobs reads or writes, in one place.

arq's own keys are kept exactly as arq writes them, so plain arq clients and workers
share the same Redis with asyncjobs:

==================================  ======  ===========================================  ==========================
key                                 type    holds                                        lifetime
==================================  ======  ===========================================  ==========================
``arq:queue`` / ``arq:queue:<q>``    zset    job ids scored by run-at epoch ms, less       until the job finishes
                                            ``priority * PRIORITY_STEP_MS`` for a job due
                                            now (:func:`priority_score`); a running job
                                            is re-scored to its lease expiry
``arq:job:<id>``                    string  the serialized job (function, args, kwargs)   until done, or expiry
``arq:in-progress:<id>``            string  claim marker; a lease renewed while it runs   lease (seconds)
                                            (the engine writes its worker id: only the
                                            owner renews it)
``arq:retry:<id>``                  string  try counter                                  ~24 h
``arq:result:<id>``                 string  the serialized result or structured error     ``keep_result``
``arq:abort``                       zset    ids asked to abort, scored by request time   pruned after an hour
``<queue>:health-check``            string  arq's worker health line                      health interval
``asyncjobs:state:<id>``            hash    start time, worker, progress, message, meta,  ``STATE_TTL_S``
                                            ``queue_score``: the score the job was
                                            claimed at, restored if its lease lapses, and
                                            ``ended``: the start of the plain-arq run whose
                                            end was written (written once per run)
``asyncjobs:leases:<queue key>``    zset    engine-claimed job ids scored by lease        while leased
                                            expiry (ms): where a lapsed lease is found
``asyncjobs:events:<id>``           pubsub  lifecycle and progress events of one job      (channel)
                                            (JSON); followed through one shared
                                            ``asyncjobs:events:*`` pattern subscription
                                            per process (``EVENTS_PATTERN``)
``asyncjobs:wake:<queue>``          pubsub  "work is due" signal published on enqueue     (channel)
``asyncjobs:done``                  pubsub  JSON list of ids of jobs that just ended     (channel)
                                            (complete, failed, aborted): one shared
                                            subscription per client process, so awaiting
                                            a result costs no subscribe round trip
``asyncjobs:abort``                 pubsub  abort requests, so running jobs stop at once  (channel)
``asyncjobs:dead``                  zset    dead-lettered job ids scored by time          capped (``DEAD_MAX``)
``asyncjobs:dead:<id>``             string  JSON: payload, error, tries, queue, time      ``DEAD_TTL_S``
``asyncjobs:workers``               zset    worker ids scored by last heartbeat (ms)      pruned when stale
``asyncjobs:worker:<wid>``          string  JSON: host, pid, queues, concurrency, running heartbeat TTL
``asyncjobs:stats:<queue>``         hash    jobs that ended, by outcome: complete,        forever (a few fields
                                            failed, aborted (counted when they end)      per queue)
``asyncjobs:recent``                zset    ids of started (or aborted queued) jobs,      capped (``RECENT_MAX``)
                                            scored by start time (Redis clock, µs): the
                                            dashboard's history (waiting jobs are listed
                                            from the queues; enqueue writes no entry)
``asyncjobs:slots:<limit>``         zset    concurrency holders of a limit (a function,   while a slot is held
                                            or ``<function>#<key>``), scored by lease
                                            expiry (:mod:`asyncjobs.limits`)
``asyncjobs:rate:<limit>``          hash    a rate limit's bucket (``tat``: next token    a minute after its
                                            time) and its scheduled job (``sched``)       last token
``asyncjobs:parked:<kind>:<limit>`` zset    jobs parked on a limit (kind ``slots``,       while jobs wait
                                            ``rate``, ``paused``), scored by the queue
                                            score they get back
``asyncjobs:paused``                hash    paused queues (``q:<queue key>``) and         until resumed
                                            functions (``f:<name>``): ms paused at
``asyncjobs:limits``                hash    function -> JSON of its limits, written by    refreshed by workers
                                            the workers that register it (for the API)    (``LIMITS_TTL_S``)
``asyncjobs:workflow:<wf>``          hash    a workflow: total nodes, ended, failed,       the workflow's ``expires``
                                            first failed node, aborted flag, created
``asyncjobs:workflow:<wf>:nodes``    list    the workflow's job ids, in creation order     the workflow's ``expires``
``asyncjobs:workflow:<wf>:sinks``    list    ids whose results are the workflow's result   the workflow's ``expires``
``asyncjobs:workflow:<wf>:events``   pubsub  JSON: a node queued / ended, workflow ended   (channel)
``asyncjobs:node:<id>``             hash    a workflow node: state (``st``), queue,       the workflow's ``expires``
                                            parents needed/ended (``e:<parent>`` each),
                                            policy, children; a job another workflow
                                            waits on holds its children (``ch``) here
``asyncjobs:<mode>:<fn>:<key>``     string  the id of the job holding a flow-control      its window (debounce:
                                            window; mode ``dedupe``, ``debounce`` or      as long as the pending
                                            ``throttle``; key ``k:<given key>``,          job may live)
                                            ``h:<arguments hash>`` or ``*`` (function)
==================================  ======  ===========================================  ==========================

**The tagged layout** (for Redis Cluster, usable on one Redis too): a queue whose name holds a
hash tag, such as ``{high}`` (key ``arq:queue:{high}``), keeps everything of its own in the one
hash slot of that tag. Its job ids start with the tag (``{high}V1x…``), so each job's keys hash
with it, and the set-wide keys above (``arq:abort``, ``asyncjobs:dead``, ``asyncjobs:recent``,
``asyncjobs:paused``, the limits' ``slots``/``rate``/``parked`` keys and the flow-control
windows) are kept once per tag, the tag appended (``asyncjobs:dead{high}``) or,
for a prefix, put after it (``asyncjobs:slots:{high}<limit>``): :func:`tagged`. A queue without
a tag uses the untagged keys, exactly as before. Scripts find the tag in their first key
(``KEYS[1]``: a queue, or a key of one of its jobs), so each call touches one slot.

A worker given another arq queue key (``Worker(queue_name="custom_queue")``) uses that key as
its queue; :func:`queue` and :func:`queue_name_of` map any key to a name and back.

Nothing else in the package builds a key string.
"""

from __future__ import annotations

from arq.constants import (
    abort_jobs_ss,
    default_queue_name,
    in_progress_key_prefix,
    job_key_prefix,
    result_key_prefix,
    retry_key_prefix,
)

PREFIX = "asyncjobs:"
DEFAULT_QUEUE = "default"

ARQ_ABORT = abort_jobs_ss
DEAD = PREFIX + "dead"
WORKERS = PREFIX + "workers"
RECENT = PREFIX + "recent"
ABORT_CHANNEL = PREFIX + "abort"
DONE_CHANNEL = PREFIX + "done"
PAUSED = PREFIX + "paused"
LIMITS = PREFIX + "limits"
LIMITS_TTL_S = 24 * 3600
EVENTS_PATTERN = PREFIX + "events:*"  # every job's events: the one subscription event streams share

# Job ids the scheduler owns: each cron tick is enqueued as ``cron:<name>:<tick ms>``, unique by
# id so it runs once however many workers compute it. Clients may not enqueue under these
# prefixes (a job there would take the tick's place and suppress the run).
CRON_ID_PREFIX = "cron:"
RESERVED_ID_PREFIXES = (CRON_ID_PREFIX,)

STATE_TTL_S = 7 * 24 * 3600
DEAD_TTL_S = 30 * 24 * 3600
DEAD_MAX = 10_000
RECENT_MAX = 100_000


def tag_of(key: str) -> str:
    """The hash tag of ``key`` with its braces (``{high}``), as Redis Cluster finds it: from
    the first ``{`` to the next ``}``, if something lies between; ``""`` if it has none."""
    start = key.find("{")
    if start < 0:
        return ""
    end = key.find("}", start + 1)
    return key[start : end + 1] if end > start + 1 else ""


def tagged(key: str, tag: str) -> str:
    """The copy of set-wide key (or key prefix) ``key`` kept for hash tag ``tag`` (``""``: the
    key itself). A prefix ends with ``:``: the tag goes after it, so what follows the prefix
    stays readable (``asyncjobs:slots:{high}send``); a key gets the tag at its end."""
    return key + tag


def paused_of(of: str) -> str:
    """The paused hash the claims of a queue read, that queue given by its name, its key or one
    of its job ids (all hold the same hash tag): the tag's copy of :data:`PAUSED`."""
    return tagged(PAUSED, tag_of(of))


def queue(name: str) -> str:
    """The arq sorted set behind queue ``name`` (inverse of :func:`queue_name_of`): ``default``
    is arq's own ``arq:queue`` and a short name ``n`` is ``arq:queue:n``; a name that holds a
    ``:`` is a queue key already and is used as it is (a leading ``:`` marks a key without one)."""
    if name == DEFAULT_QUEUE:
        return default_queue_name
    if ":" not in name:
        return f"{default_queue_name}:{name}"
    return name[1:] if name.startswith(":") else name


# Priority: one level moves a job PRIORITY_STEP_MS (about 3.17 years) back in its queue. Queues
# are read lowest score first (by the engine's claim and by plain arq's ZRANGEBYSCORE), so a due
# job of priority p is taken before every due job of a lower priority, and jobs of one priority
# keep their order. PRIORITY_MAX steps (9e11 ms) keep the score of any job enqueued after 1998
# above zero.
PRIORITY_MAX = 9
PRIORITY_STEP_MS = 10**11


def priority_score(now_ms: int, priority: int) -> int:
    """The queue score of a job enqueued at ``now_ms``, due at once, with ``priority`` (0-9,
    higher runs first; the caller checks the range). Only for a job due now: an offset on a
    future run-at time would make it due early."""
    return now_ms - priority * PRIORITY_STEP_MS


def decode_score(score: float, now_ms: int) -> tuple[int, int]:
    """``(run_at_ms, priority)`` of a queue score read at ``now_ms``: the inverse of
    :func:`priority_score` (a future score is a deferred job or a lease: priority 0).

    Bound: a job is told apart from a higher-priority one by how far its score lies behind
    ``now_ms``, so a job that has been due for longer than one ``PRIORITY_STEP_MS`` (≈3 years,
    far beyond the job key's expiry) is misread as one level higher and that much later.
    """
    s = int(score)
    if s > now_ms:
        return s, 0
    priority = min((now_ms - s) // PRIORITY_STEP_MS, PRIORITY_MAX)
    return s + priority * PRIORITY_STEP_MS, priority


def priority_bands(now_ms: int) -> list[tuple[str, int]]:
    """Score ranges ``(min, max)`` (Redis syntax) of the jobs due at ``now_ms``, one per
    priority from 0 up: each band's lowest score is the longest-waiting job of that priority."""
    step = PRIORITY_STEP_MS
    bands = [(f"({now_ms - (p + 1) * step}", now_ms - p * step) for p in range(PRIORITY_MAX)]
    return [*bands, ("-inf", now_ms - PRIORITY_MAX * step)]


def queue_name_of(key: str) -> str:
    """The queue name of arq queue key ``key`` (inverse of :func:`queue`): the short name for
    ``arq:queue`` and ``arq:queue:<name>``, the key itself for any other key an arq worker may
    listen on (``custom_queue`` becomes ``:custom_queue``, so it never reads as a short name)."""
    if key == default_queue_name:
        return DEFAULT_QUEUE
    short = key.removeprefix(default_queue_name + ":")
    if short != key and short and ":" not in short and short != DEFAULT_QUEUE:
        return short
    return key if ":" in key and not key.startswith(":") else ":" + key


def job(job_id: str) -> str:
    return job_key_prefix + job_id


def in_progress(job_id: str) -> str:
    return in_progress_key_prefix + job_id


def retry(job_id: str) -> str:
    return retry_key_prefix + job_id


def result(job_id: str) -> str:
    return result_key_prefix + job_id


def leases(queue_key: str) -> str:
    """Leases taken by the engine on the jobs of queue zset ``queue_key`` (``""``: the prefix)."""
    return f"{PREFIX}leases:{queue_key}"


def state(job_id: str) -> str:
    return f"{PREFIX}state:{job_id}"


def flow(mode: str, function: str, key: str, tag: str = "") -> str:
    """The window a flow-control option (:mod:`asyncjobs.flow`) holds for ``function`` under
    ``key``, kept per hash tag (before the names: a name may hold braces of its own)."""
    return f"{PREFIX}{tag}{mode}:{function}:{key}"


def events(job_id: str) -> str:
    return f"{PREFIX}events:{job_id}"


def wake(queue_name: str) -> str:
    return f"{PREFIX}wake:{queue_name}"


def dead(job_id: str) -> str:
    return f"{DEAD}:{job_id}"


def stats(queue_name: str) -> str:
    return f"{PREFIX}stats:{queue_name}"


def workflow(workflow_id: str) -> str:
    """A workflow's hash (``""``: the prefix); its node list, sinks and events channel add a suffix."""
    return f"{PREFIX}workflow:{workflow_id}"


def workflow_nodes(workflow_id: str) -> str:
    return workflow(workflow_id) + ":nodes"


def workflow_sinks(workflow_id: str) -> str:
    return workflow(workflow_id) + ":sinks"


def workflow_events(workflow_id: str) -> str:
    return workflow(workflow_id) + ":events"


def node(job_id: str) -> str:
    """A workflow node's hash (``""``: the prefix)."""
    return f"{PREFIX}node:{job_id}"


def worker(worker_id: str) -> str:
    return f"{PREFIX}worker:{worker_id}"


def health_check(queue_name: str) -> str:
    """arq's worker health line for a queue (written by every arq-based worker, plain arq too)."""
    return queue(queue_name) + ":health-check"


def slots(limit: str) -> str:
    """Holders of concurrency limit ``limit`` (``""``: the prefix)."""
    return f"{PREFIX}slots:{limit}"


def rate(limit: str) -> str:
    """The bucket of rate limit ``limit`` (``""``: the prefix)."""
    return f"{PREFIX}rate:{limit}"


def parked(kind_limit: str) -> str:
    """Jobs parked on ``<kind>:<limit>`` (``""``: the prefix)."""
    return f"{PREFIX}parked:{kind_limit}"
