"""asyncjobs: an asyncio-native job queue on arq and Redis.

Define jobs with :func:`job`, run them with ``asyncjobs worker`` (or plain
``arq settings.WorkerSettings``), enqueue and await them with :func:`connect`.
"""

import logging
from importlib import metadata as _metadata

from asyncjobs.backoff import Exponential, Fixed
from asyncjobs.canvas import Signature, chain, chord, group
from asyncjobs.client import Client, JobCall, JobHandle, call, connect
from asyncjobs.config import Settings, worker_settings
from asyncjobs.context import JobContext
from asyncjobs.cron import cron
from asyncjobs.errors import (
    AsyncJobsError,
    BrokerUnavailable,
    ConfigError,
    DuplicateJob,
    InvalidArguments,
    InvalidWorkflow,
    JobAborted,
    JobFailed,
    JobNotFound,
    NotReplicated,
    UnknownFunction,
)
from asyncjobs.executors import cancel_event
from asyncjobs.records import JobRecord, JobStatus
from asyncjobs.registry import JobFunction, Registry, job
from asyncjobs.worker import Worker
from asyncjobs.workflows import Workflow, WorkflowStatus

logging.getLogger(__name__).addHandler(logging.NullHandler())

try:
    __version__ = _metadata.version("asyncjobs")  # the installed package's (pyproject.toml's)
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "AsyncJobsError",
    "BrokerUnavailable",
    "Client",
    "ConfigError",
    "DuplicateJob",
    "Exponential",
    "Fixed",
    "InvalidArguments",
    "InvalidWorkflow",
    "JobAborted",
    "JobCall",
    "JobContext",
    "JobFailed",
    "JobFunction",
    "JobHandle",
    "JobNotFound",
    "JobRecord",
    "JobStatus",
    "NotReplicated",
    "Registry",
    "Settings",
    "Signature",
    "UnknownFunction",
    "Worker",
    "Workflow",
    "WorkflowStatus",
    "call",
    "cancel_event",
    "chain",
    "chord",
    "connect",
    "cron",
    "group",
    "job",
    "worker_settings",
]
