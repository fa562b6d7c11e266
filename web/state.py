"""The app's typed state keys (``web.AppKey``); :mod:`web.app` fills them and re-exports them."""

from __future__ import annotations

import weakref

from aiohttp import web

from asyncjobs.client import Client
from asyncjobs.config import Settings
from asyncjobs.connections import Broker
from asyncjobs.events import EventHub
from asyncjobs.registry import Registry
from asyncjobs.store import JobStore
from web.metrics import Metrics
from web.schemas import Schemas

SETTINGS = web.AppKey("settings", Settings)
REGISTRY = web.AppKey("registry", Registry)
SCHEMAS = web.AppKey("schemas", Schemas)
METRICS = web.AppKey("metrics", Metrics)
BROKER = web.AppKey("broker", Broker)
CLIENT = web.AppKey("client", Client)
STORE = web.AppKey("store", JobStore)  # every read of the app goes through it (the client's store)
CRON_JOBS = web.AppKey("cron_jobs", tuple)  # the deployment's cron jobs, given to create_app
HUB = web.AppKey("hub", EventHub)  # the process's one pub/sub connection (the client's hub)
SSE_STREAMS = web.AppKey("sse_streams", weakref.WeakSet)  # every open web.sse.Stream (API and dashboard)
SSE_PING_S = web.AppKey("sse_ping_s", float)  # seconds between SSE keep-alive pings
