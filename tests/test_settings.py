"""``settings.py`` and the ``WorkerSettings`` builder: validated, typos rejected with a hint."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from arq.worker import Worker as ArqWorker

import settings
from asyncjobs import ConfigError, Registry, Settings, worker_settings
from asyncjobs.config import settings_kwargs
from asyncjobs.examples import count_words

ROOT = Path(__file__).resolve().parents[1]


def test_defaults():
    """The defaults documented in settings.py and the README, as literals."""
    s = settings.load({})
    assert dataclasses.asdict(s) == {
        "redis_url": "redis://localhost:6379/0",
        "api_token": None,
        "queues": ("default",),
        "concurrency": 100,
        "job_timeout": 300,
        "keep_result": 3600,
        "lease": 5,
        "poll_delay": 0.5,
        "shutdown_grace": 25,
        "job_expiry": None,
        "max_body_bytes": 1048576,
        "allow_public_without_token": False,
        "metrics_port": None,
        "durable_enqueue": 0,
        "allowed_hosts": (),
        "header_timeout": 10,
        "body_timeout": 30,
        "max_connections": 0,
        "show_traceback_paths": False,
    }
    assert s == Settings()


# read by settings.py itself, not fields of Settings; their defaults are checked below
SETTINGS_PY_ONLY = {"SMTP_HOST", "SMTP_PORT", "SMTP_SENDER", "EXAMPLES", "DATA_DIR"}


@pytest.mark.parametrize(
    ("doc", "row"),
    [
        (settings.__doc__ or "", r"^ASYNCJOBS_([A-Z_]+) +(\S+) "),
        ((ROOT / "README.md").read_text(), r"^\| `ASYNCJOBS_([A-Z_]+)` \| `?([^`|]+?)`? \|"),
    ],
    ids=["settings.py", "README.md"],
)
def test_the_documented_defaults_are_the_defaults(doc, row):
    rows = re.findall(row, doc, re.MULTILINE)
    documented = {name.lower(): value.replace("—", "(none)") for name, value in rows if name not in SETTINGS_PY_ONLY}
    assert len(documented) >= 10
    defaults = dataclasses.asdict(Settings())
    for name, value in documented.items():
        actual = defaults[name]
        if isinstance(actual, tuple):
            actual = ",".join(actual) or "(none)"
        elif isinstance(actual, bool):
            actual = str(actual).lower()
        elif actual is None:
            actual = "(none)"
        assert value == str(actual).removesuffix(".0"), name
    extra = {name: value.replace("—", "(none)") for name, value in rows if name in ("EXAMPLES", "DATA_DIR")}
    assert extra == {"EXAMPLES": "false", "DATA_DIR": "(none)"}
    env = settings.read({})
    assert not env.examples and env.data_dir is None


def test_values_are_cast():
    s = settings.load(
        {
            "REDIS_URL": "rediss://:pw@cache.example:6380/2",
            "ASYNCJOBS_QUEUES": "high, default ,low",
            "ASYNCJOBS_CONCURRENCY": "7",
            "ASYNCJOBS_LEASE": "1.5",
            "ASYNCJOBS_API_TOKEN": "secret",
            "ASYNCJOBS_ALLOW_PUBLIC_WITHOUT_TOKEN": "yes",
            "ASYNCJOBS_SMTP_HOST": "mail",
            "UNRELATED": "ignored",
        }
    )
    assert s.redis_url == "rediss://:pw@cache.example:6380/2"
    assert s.queues == ("high", "default", "low")
    assert (s.concurrency, s.lease, s.api_token, s.allow_public_without_token) == (7, 1.5, "secret", True)


def test_unknown_setting_is_rejected_with_a_suggestion():
    with pytest.raises(ConfigError) as exc_info:
        settings.load({"ASYNCJOBS_CONCURENCY": "5"})
    assert "'ASYNCJOBS_CONCURENCY'" in str(exc_info.value)
    assert "did you mean 'ASYNCJOBS_CONCURRENCY'" in str(exc_info.value)
    assert exc_info.value.key == "ASYNCJOBS_CONCURENCY"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"ASYNCJOBS_CONCURRENCY": "many"}, "ASYNCJOBS_CONCURRENCY 'many' is not an integer"),
        ({"ASYNCJOBS_LEASE": "soon"}, "ASYNCJOBS_LEASE 'soon'"),
        ({"ASYNCJOBS_ALLOW_PUBLIC_WITHOUT_TOKEN": "maybe"}, "not a boolean"),
        ({"ASYNCJOBS_CONCURRENCY": "0"}, "ASYNCJOBS_CONCURRENCY"),
        ({"ASYNCJOBS_LEASE": "-1"}, "ASYNCJOBS_LEASE"),
        ({"ASYNCJOBS_QUEUES": " , "}, "ASYNCJOBS_QUEUES is empty"),
    ],
)
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(ConfigError) as exc_info:
        settings.load(env)
    assert needle in str(exc_info.value)


@pytest.mark.parametrize("url", ["redis//x", "http://localhost:6379", "redis://", "redis://h:port/0", "redis://h/db"])
def test_malformed_redis_url_is_a_config_error_naming_it(url):
    with pytest.raises(ConfigError) as exc_info:
        settings.load({"REDIS_URL": url})
    assert "REDIS_URL" in str(exc_info.value) and repr(url) in str(exc_info.value)
    assert exc_info.value.key == "REDIS_URL"


def test_redis_url_password_is_masked_in_errors():
    with pytest.raises(ConfigError) as exc_info:
        settings.load({"REDIS_URL": "redis://:hunter2@h:bad/0"})
    assert "hunter2" not in str(exc_info.value)


@pytest.mark.parametrize("url", ["redis://localhost", "unix:///tmp/redis.sock", "memory://", "rediss://h:1/0"])
def test_accepted_urls(url):
    assert settings.load({"REDIS_URL": url}).redis_url == url


def test_worker_settings_rejects_unknown_options():
    with pytest.raises(ConfigError, match="unknown worker option 'max_job'; did you mean 'max_jobs'"):
        worker_settings([count_words], max_job=50)


def test_worker_settings_passes_known_arq_options():
    cls = worker_settings([count_words], job_completion_wait=3)
    assert cls.job_completion_wait == 3


def test_worker_settings_is_arq_compatible():
    _, _, cls = settings.build(examples=True)
    assert {f.name for f in cls.functions} >= {"count_words", "send_email", "process_csv", "generate_report", "cleanup"}
    assert [c.name for c in cls.cron_jobs] == ["cron:cleanup"]
    assert cls.job_serializer is not None and cls.job_deserializer is not None
    assert cls.allow_abort_jobs is True
    # everything arq's Worker gets from it is a parameter it knows (arq would drop the rest)
    arq_params = set(__import__("inspect").signature(ArqWorker.__init__).parameters)
    kwargs = {k: v for k, v in vars(cls).items() if not k.startswith("_")}
    extra = set(kwargs) - arq_params
    assert extra <= {"queues", "lease", "redis_url", "registry", "runtime", "metrics_port"}


def test_settings_kwargs_rejects_typos_in_a_settings_class():
    class WorkerSettings:
        functions = ()
        max_job = 50

    with pytest.raises(ConfigError, match="unknown WorkerSettings attribute 'max_job'; did you mean 'max_jobs'"):
        settings_kwargs(WorkerSettings)


def test_registry_of_examples():
    registry, cron_jobs, _ = settings.build(examples=True)
    assert isinstance(registry, Registry)
    assert registry.names() == ["cleanup", "count_words", "generate_report", "process_csv", "send_email"]
    assert [c.name for c in cron_jobs] == ["cron:cleanup"]


def test_a_deployment_serves_no_example_job_unless_asked():
    registry, cron_jobs, cls = settings.build(examples=False)
    assert registry.names() == [] and cron_jobs == [] and list(cls.functions) == []
