"""``python -m services.api.main``: serves on STRATUS_API_URL's port, ends cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import ssl
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from libs.runtime.settings import Settings
from libs.servers.ports import free_port
from services.api.main import bind_address, tls_settings

from .conftest import SERVICE_YAML


def test_bind_address() -> None:
    assert bind_address("http://127.0.0.1:8765") == ("127.0.0.1", 8765)
    assert bind_address("http://0.0.0.0:9000/") == ("0.0.0.0", 9000)
    assert bind_address("http://localhost") == ("localhost", 8765)


async def test_serves_then_stops_on_sigterm(fresh_db_url: str, nats_url: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {
        **os.environ, "DATABASE_URL": fresh_db_url, "NATS_URL": nats_url, "STRATUS_API_URL": url,
        "STRATUS_HOME": str(tmp_path),
    }  # fmt: skip
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.api.main", env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:
            for _ in range(300):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the API did not start")
            # The first start wrote the first admin token, readable by this user only.
            token_path = tmp_path / "auth" / "admin.token"
            assert stat.S_IMODE(token_path.stat().st_mode) == 0o600
            http.headers["Authorization"] = f"Bearer {token_path.read_text().strip()}"
            r = await http.post(
                "/v1/services",
                json={"name": "svc", "yaml": SERVICE_YAML},
            )
            assert r.status_code == 201, r.text
            assert (await http.get("/v1/services/svc")).json()["status"] == "CONTROLLER_INIT"
            # An open follower must not hold the shutdown up.
            async with http.stream("GET", "/v1/events/stream", timeout=httpx.Timeout(5, read=15)) as stream:
                proc.send_signal(signal.SIGTERM)
                async for _ in stream.aiter_lines():
                    pass
        code = await asyncio.wait_for(proc.wait(), 15)
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
        assert code == 0, log
        assert "Finished server process" in log
        assert (tmp_path / "secrets.key").exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


LOOPBACK = ipaddress.ip_address("127.0.0.1")


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(LOOPBACK)]), critical=False)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    certfile, keyfile = tmp_path / "api.crt", tmp_path / "api.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return certfile, keyfile


async def test_serves_https_with_the_given_certificate(
    fresh_db_url: str, nats_url: str, tmp_path: Path
) -> None:
    certfile, keyfile = self_signed(tmp_path)
    port = free_port()
    env = {
        **os.environ, "DATABASE_URL": fresh_db_url, "NATS_URL": nats_url,
        "STRATUS_API_URL": f"https://127.0.0.1:{port}", "STRATUS_HOME": str(tmp_path / "home"),
    }  # fmt: skip
    argv = ["-m", "services.api.main", "--tls-certfile", str(certfile), "--tls-keyfile", str(keyfile)]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        context = ssl.create_default_context(cafile=str(certfile))
        async with httpx.AsyncClient(base_url=f"https://127.0.0.1:{port}", verify=context, timeout=5) as http:
            for _ in range(300):
                try:
                    r = await http.get("/healthz")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError("the API did not start")
            assert r.status_code == 200
            token = (tmp_path / "home" / "auth" / "admin.token").read_text().strip()
            me = await http.get("/v1/auth/whoami", headers={"Authorization": f"Bearer {token}"})
            assert me.json()["role"] == "admin"
        async with httpx.AsyncClient(timeout=5) as plain:
            with pytest.raises(httpx.TransportError):
                await plain.get(f"http://127.0.0.1:{port}/healthz")
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)


def test_tls_needs_both_files(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    with pytest.raises(SystemExit):
        tls_settings(settings, ["--tls-certfile", str(tmp_path / "x.crt")])
    with pytest.raises(SystemExit):
        tls_settings(
            settings, ["--tls-certfile", str(tmp_path / "no.crt"), "--tls-keyfile", str(tmp_path / "no.key")]
        )
    assert tls_settings(settings, []).api_tls_certfile == ""
