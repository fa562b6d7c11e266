"""TLS: ``rediss://`` with a private CA and client certificates, given as URL parameters, for
the client, an ``asyncjobs worker`` and a plain ``arq`` worker."""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
import redis
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from reliability_app import rel_work
from reliability_support import Workers

import asyncjobs
from asyncjobs.config import redis_settings
from asyncjobs.connections import create_broker
from asyncjobs.errors import BrokerUnavailable, ConfigError
from asyncjobs.leases import close_sync, sync_client
from asyncjobs.testing import free_port, stop_process

pytestmark = pytest.mark.timeout(90)


def _cert(
    dir: Path, name: str, issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None, usage: object
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate and key for ``name`` in ``dir`` (``name``.crt, ``name``.key): a CA when
    ``issuer`` is None, else signed by ``issuer`` for ``usage`` (server or client auth)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"asyncjobs test {name}")])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)  # type: ignore[list-item]
        san = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (dir / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (dir / f"{name}.key").write_bytes(pem)
    return cert, key


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A redis-server that speaks TLS only and requires a client certificate from the test CA;
    yields its port and the directory of ca.crt, server.*, client.*."""
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = _cert(certs, "ca", None, None)
    _cert(certs, "server", ca, ExtendedKeyUsageOID.SERVER_AUTH)
    _cert(certs, "client", ca, ExtendedKeyUsageOID.CLIENT_AUTH)
    port = free_port()
    args = [shutil.which("redis-server") or "redis-server", "--port", "0", "--tls-port", str(port)]
    args += ["--bind", "127.0.0.1", "--dir", str(tmp_path), "--save", "", "--appendonly", "no"]
    args += ["--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key")]
    args += ["--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "yes"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    files = {f"ssl_{k}": str(certs / v) for k, v in (("ca_certs", "ca.crt"), ("certfile", "client.crt"))}
    deadline = time.monotonic() + 10
    while True:
        try:
            redis.Redis(port=port, ssl=True, ssl_keyfile=str(certs / "client.key"), **files).ping()  # type: ignore[arg-type]
            break
        except redis.exceptions.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)  # polling with a deadline for the server to listen
    yield port, certs
    stop_process(proc)


def tls_url(port: int, certs: Path, *, client_cert: bool = True) -> str:
    params = {"ssl_ca_certs": certs / "ca.crt", "ssl_cert_reqs": "required"}
    if client_cert:
        params |= {"ssl_certfile": certs / "client.crt", "ssl_keyfile": certs / "client.key"}
    return f"rediss://127.0.0.1:{port}/0?{urlencode(params)}"


async def test_client_and_both_workers_run_jobs_over_tls(tls_redis, tmp_path):
    port, certs = tls_redis
    url = tls_url(port, certs)
    workers = Workers(tmp_path, url)
    try:
        async with asyncjobs.connect(url, default_queue=workers.queue) as client:
            pids = {}
            for kind in ("asyncjobs", "arq"):
                proc = workers.start(kind)
                handle = await client.enqueue(rel_work, 0.0)
                pids[kind] = (await handle.result(timeout=30), proc.proc.pid)
                proc.kill()
                assert "Traceback" not in proc.output(), proc.output()
    finally:
        workers.close()
    assert pids["asyncjobs"][0] == pids["asyncjobs"][1]  # each job ran on the worker started for it
    assert pids["arq"][0] == pids["arq"][1]


async def test_the_lease_threads_client_speaks_tls(tls_redis):
    port, certs = tls_redis
    broker = create_broker(tls_url(port, certs))
    try:
        sync = sync_client(broker, socket_timeout=1.0)  # what a worker's lease thread uses
        assert sync.ping()
        close_sync(sync)
    finally:
        await broker.aclose(close_connection_pool=True)


async def test_without_a_client_certificate_the_server_refuses(tls_redis):
    port, certs = tls_redis
    with pytest.raises(BrokerUnavailable):
        async with asyncjobs.connect(tls_url(port, certs, client_cert=False)):
            pass


def test_tls_parameters_reach_arq_settings(tls_redis):
    port, certs = tls_redis
    rs = redis_settings(tls_url(port, certs) + "&ssl_check_hostname=true")
    assert rs is not None and rs.ssl
    assert (rs.ssl_ca_certs, rs.ssl_certfile, rs.ssl_keyfile) == tuple(
        str(certs / f) for f in ("ca.crt", "client.crt", "client.key")
    )
    assert (rs.ssl_cert_reqs, rs.ssl_check_hostname) == ("required", True)


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("ssl_ca_certs=/no/such/ca.crt", "no such file"),
        ("ssl_cert_reqs=sometimes", "use one of none, optional, required"),
        ("ssl_check_hostname=maybe", "use true or false"),
        ("ssl_ca_cert=/x", "unknown parameter 'ssl_ca_cert'"),
    ],
)
def test_bad_tls_parameters_say_why(query, says):
    with pytest.raises(ConfigError, match=says):
        redis_settings(f"rediss://127.0.0.1:6380/0?{query}")
