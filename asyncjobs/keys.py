"""Every Redis key and channel asyncjobs reads or writes, in one place.

arq's own keys are kept exactly as arq writes them, so plain arq clients and workers
share the same Redis with asyncjobs:

==================================  ======  ===========================================  ==========================
key                                 type    holds                                        lifetime
==================================  ======  ===========================================  ==========================
``arq:queue`` / ``arq:queue:<q>``    zset    job ids scored by run-at epoch ms; a running  until the job finishes
                                            job is re-scored to its lease expiry
``arq:job:<id>``                    string  the serialized job (function, args, kwargs)   until done, or expiry
``arq:in-progress:<id>``            string  claim marker; a lease renewed while it runs   lease (seconds)
``arq:retry:<id>``                  string  try counter                                  ~24 h
``arq:result:<id>``                 string  the serialized result or structured error     ``keep_result``
``arq:abort``                       zset    ids asked to abort, scored by request time   pruned after an hour
``<queue>:health-check``            string  arq's worker health line                      health interval
``asyncjobs:state:<id>``            hash    start time, worker, progress, message, meta   ``STATE_TTL_S``
``asyncjobs:events:<id>``           pubsub  lifecycle and progress events of one job      (channel)
``asyncjobs:wake:<queue>``          pubsub  "work is due" signal published on enqueue     (channel)
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
==================================  ======  ===========================================  ==========================

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
EVENTS_PATTERN = PREFIX + "events:*"

STATE_TTL_S = 7 * 24 * 3600
DEAD_TTL_S = 30 * 24 * 3600
DEAD_MAX = 10_000
RECENT_MAX = 100_000


def queue(name: str) -> str:
    """The arq sorted set behind queue ``name``: ``default`` is arq's own ``arq:queue``."""
    if name == DEFAULT_QUEUE:
        return default_queue_name
    return f"{default_queue_name}:{name}"


def queue_name_of(key: str) -> str:
    """Inverse of :func:`queue`."""
    if key == default_queue_name:
        return DEFAULT_QUEUE
    return key.removeprefix(default_queue_name + ":")


def job(job_id: str) -> str:
    return job_key_prefix + job_id


def in_progress(job_id: str) -> str:
    return in_progress_key_prefix + job_id


def retry(job_id: str) -> str:
    return retry_key_prefix + job_id


def result(job_id: str) -> str:
    return result_key_prefix + job_id


def state(job_id: str) -> str:
    return f"{PREFIX}state:{job_id}"


def events(job_id: str) -> str:
    return f"{PREFIX}events:{job_id}"


def wake(queue_name: str) -> str:
    return f"{PREFIX}wake:{queue_name}"


def dead(job_id: str) -> str:
    return f"{DEAD}:{job_id}"


def stats(queue_name: str) -> str:
    return f"{PREFIX}stats:{queue_name}"


def worker(worker_id: str) -> str:
    return f"{PREFIX}worker:{worker_id}"
