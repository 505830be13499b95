"""The fake Azure Resource Manager (``azure_arm.FakeArm``) served over HTTPS on loopback.

The real SDK clients (azure-mgmt-compute/network/resource) talk to it with only ``base_url`` and
``connection_verify`` changed: azure-core refuses bearer tokens over plain http, so the server
uses a self-signed certificate for 127.0.0.1 made with ``cryptography`` and the clients trust it.
A request without ``Authorization: Bearer <TOKEN>`` (what ``StaticCredential`` hands out) gets
401 ``AuthenticationFailed``, as ARM answers one without a valid token.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from azure.core.credentials import AccessToken
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .azure_arm import FakeArm, Fault, Recorded, error_body

__all__ = [
    "TOKEN",
    "FakeArm",
    "Fault",
    "Recorded",
    "StaticCredential",
    "running_fake_arm",
    "write_self_signed",
]

TOKEN = "fake-arm-token"


class StaticCredential:
    """A TokenCredential handing out one fixed token (or raising ``error`` when set)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.error = error
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        self.scopes.append(scopes)
        if self.error is not None:
            raise self.error
        return AccessToken(TOKEN, int(time.time()) + 3600)


def write_self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, written under ``directory``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-arm.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "fake-arm.pem", directory / "fake-arm.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


def _handler(arm: FakeArm) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self._answer(401, error_body("AuthenticationFailed", "no valid bearer token"), {})
                return
            try:
                status, payload, headers = arm.handle(self.command, url.path, parse_qs(url.query), body)
            except Exception as exc:  # a bug of the fake: answer 400 (not retried) and keep it for the test
                arm.bugs.append(f"{self.command} {url.path}: {exc!r}")
                status, payload, headers = 400, error_body("FakeArmBug", repr(exc)), {}
            self._answer(status, payload, headers)

        def _answer(self, status: int, payload: Any, headers: dict[str, str]) -> None:
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-ms-request-id", str(uuid.uuid4()))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_DELETE = do_POST = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def running_fake_arm(directory: Path) -> Iterator[FakeArm]:
    """A FakeArm served over HTTPS on 127.0.0.1 (an ephemeral port) until the block ends."""
    cert, key = write_self_signed(directory)
    arm = FakeArm(ca_path=str(cert))
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(arm))
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    arm.base_url = f"https://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-arm", daemon=True)
    thread.start()
    try:
        yield arm
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
