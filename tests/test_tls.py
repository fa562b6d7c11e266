"""Redis over TLS: a redis-server with TLS only (client certificates required), certificates
made here with the ``openssl`` CLI, a ``rediss://`` URL with the documented parameters, and a
job enqueued by the client and run by an ``asyncjobs worker`` subprocess."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis

from asyncjobs import connect
from asyncjobs.errors import BrokerUnavailable
from asyncjobs.examples import count_words
from asyncjobs.testing import free_port, stop_process


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certificates(d: Path) -> None:
    """A CA, and a server and a client certificate it signed (the server's for 127.0.0.1)."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)  # fmt: skip
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
        ext = ["-extfile", "server.ext"] if name == "server" else []
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-out", f"{name}.crt", *ext, cwd=d)  # fmt: skip


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """(port, certificate directory) of a TLS-only redis-server requiring client certificates."""
    assert shutil.which("openssl"), "the openssl CLI is needed to make test certificates"
    certs = tmp_path / "certs"
    certs.mkdir()
    make_certificates(certs)
    port = free_port()
    args = ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1"]
    args += ["--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key")]
    args += ["--tls-ca-cert-file", str(certs / "ca.crt")]
    args += ["--tls-auth-clients", "yes", "--dir", str(tmp_path), "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(args, cwd=certs, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = redis.Redis(
        port=port, ssl=True, ssl_ca_certs=str(certs / "ca.crt"), ssl_certfile=str(certs / "client.crt"),
        ssl_keyfile=str(certs / "client.key"), socket_connect_timeout=0.5,
    )  # fmt: skip
    deadline = time.monotonic() + 15
    while True:
        assert proc.poll() is None, proc.communicate()[0].decode()[-2000:]  # e.g. a build without TLS
        try:
            client.ping()
            break
        except redis.exceptions.ConnectionError:
            assert time.monotonic() < deadline, "the TLS redis-server did not answer"
            time.sleep(0.02)  # polling with a deadline for the server to listen
    client.close()
    yield port, certs
    stop_process(proc)  # type: ignore[arg-type]
    if proc.stdout:
        proc.stdout.close()


def tls_url(port: int, certs: Path, *, client_cert: bool = True) -> str:
    params = {"ssl_cert_reqs": "required", "ssl_ca_certs": str(certs / "ca.crt")}
    if client_cert:
        params |= {"ssl_certfile": str(certs / "client.crt"), "ssl_keyfile": str(certs / "client.key")}
    return f"rediss://127.0.0.1:{port}/0?{urlencode(params)}"


@pytest.mark.parametrize(
    "command", [["asyncjobs", "worker"], ["arq", "settings.WorkerSettings"]], ids=["asyncjobs-worker", "plain-arq"]
)
async def test_a_job_runs_through_a_worker_over_tls(tls_redis, spawn, command) -> None:
    port, certs = tls_redis
    url = tls_url(port, certs)
    worker = spawn(
        sys.executable, "-m", *command, env={"REDIS_URL": url}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        async with connect(url, registry=None) as client:
            handle = await client.enqueue(count_words, "one two three over tls")
            assert await handle.result(timeout=30) == 5
    finally:
        stop_process(worker)  # type: ignore[arg-type]


async def test_tls_is_really_required(tls_redis) -> None:
    port, certs = tls_redis
    for url in (f"redis://127.0.0.1:{port}/0", tls_url(port, certs, client_cert=False)):
        with pytest.raises(BrokerUnavailable):
            async with connect(url):
                pass
