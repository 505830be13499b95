"""Endpoint security end to end (issue 8): `stratus up` of a service with `service.tls` serves
HTTPS with that certificate, and `stratus keys` makes its endpoint require a key, rotated
without downtime and revoked within a bounded wait. No key or private key reaches the log."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.router.tls_cert import self_signed

from .conftest import REPO, Stack

pytestmark = pytest.mark.timeout(240)


def _spec(tmp: Path, cert: Path, key: Path) -> Path:
    path = tmp / "secure.yaml"
    path.write_text(
        "service:\n  readiness_probe: /\n  replicas: 1\n"
        f"  tls:\n    certfile: {cert}\n    keyfile: {key}\n"
        "resources:\n  ports: 8080\n  cpus: 1\n"
        f"workdir: {REPO / 'examples' / 'hello-sky-serve'}\n"
        "run: python -m http.server 8080\n"
    )
    return path


def _until(pred: Callable[[], bool], what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:g} s: {what}")
        time.sleep(0.1)


def test_tls_endpoint_and_api_keys(stack: Stack, tmp_path: Path) -> None:
    cert_pem, key_pem = self_signed("stratus-e2e")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(cert_pem)
    key.write_text(key_pem)
    r = stack.cli("up", str(_spec(tmp_path, cert, key)), "-n", "secure", "-y", "--timeout", "120")
    assert r.returncode == 0, r.stdout + r.stderr + stack.logs_tail()
    endpoint = stack.service("secure")["endpoint"]
    url = f"https://{endpoint}/"
    trust = ssl.create_default_context(cadata=cert_pem)

    def status(key_value: str | None = None) -> int:
        headers = {"Authorization": f"Bearer {key_value}"} if key_value else {}
        with httpx.Client(verify=trust, timeout=10) as client:
            return client.get(url, headers=headers).status_code

    with httpx.Client(verify=trust, timeout=10) as client:
        page = client.get(url)
        assert page.status_code == 200 and "SkyServe" in page.text
        peer = page.extensions["network_stream"].get_extra_info("ssl_object").getpeercert(True)
    assert ssl.DER_cert_to_PEM_cert(peer).strip() == cert_pem.strip()
    with pytest.raises(httpx.HTTPError):  # no plain HTTP on that port
        httpx.get(f"http://{endpoint}/", timeout=5)

    made = stack.cli("keys", "create", "secure", "--name", "first", check=True).stdout.splitlines()
    first = made[1].strip()
    assert first.startswith("stk_")
    _until(lambda: status() == 401, "the endpoint requires a key")
    assert status("stk_wrong") == 401 and status(first) == 200

    made = stack.cli("keys", "create", "secure", "--name", "second", check=True).stdout.splitlines()
    second = made[1].strip()
    _until(lambda: status(second) == 200, "the second key is accepted")
    assert status(first) == 200  # both valid during the rotation
    listed = json.loads(stack.cli("keys", "list", "secure", "--json", check=True).stdout)
    by_name = {k["name"]: k["key_id"] for k in listed["keys"]}
    assert listed["required"] and set(by_name) == {"first", "second"}
    stack.cli("keys", "revoke", "secure", by_name["first"], check=True)
    _until(lambda: status(first) == 401, "the revoked key is refused", within=10.0)
    assert status(second) == 200

    # Managing keys is an admin's: no token 401, a viewer may list but not create or revoke.
    keys_url = f"{stack.api_url}/v1/services/secure/keys"
    assert httpx.post(keys_url, json={"name": "x"}, timeout=10).status_code == 401
    made = stack.cli("auth", "create", "--role", "viewer", "--name", "reader", check=True).stdout.splitlines()
    viewer = {"Authorization": f"Bearer {made[1].strip()}"}
    assert httpx.post(keys_url, json={"name": "x"}, headers=viewer, timeout=10).status_code == 403
    assert httpx.delete(f"{keys_url}/{by_name['second']}", headers=viewer, timeout=10).status_code == 403
    assert httpx.get(keys_url, headers=viewer, timeout=10).status_code == 200
    admin = {"Authorization": f"Bearer {stack.token()}"}
    gone = httpx.delete(f"{keys_url}/{by_name['first']}", headers=admin, timeout=10)
    assert gone.status_code == 404 and "no valid endpoint key" in gone.json()["message"]
    assert status(second) == 200

    log = json.dumps(stack.events("secure"))
    for secret in (first, second, key_pem.splitlines()[1]):
        assert secret not in log
    assert "EndpointKeysChanged" in log
    stack.cli("down", "secure", "-y", check=True)


def test_tls_spec_needs_a_matching_pair(stack: Stack, tmp_path: Path) -> None:
    cert_pem, _ = self_signed()
    _, other_key = self_signed()
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text(cert_pem)
    key.write_text(other_key)
    spec = _spec(tmp_path, cert, key)
    r = stack.cli("up", str(spec), "-n", "mismatch", "-y", "--detach")
    assert r.returncode != 0 and "do not make a TLS server" in r.stderr, r.stdout + r.stderr
    key.unlink()
    r = stack.cli("up", str(spec), "-n", "mismatch", "-y", "--detach")
    assert r.returncode != 0 and "service.tls.keyfile: cannot read" in r.stderr, r.stderr
    # The API cannot read the client's files: a YAML with service.tls needs the PEMs in the request.
    admin = {"Authorization": f"Bearer {stack.token()}"}
    body = {"yaml": spec.read_text(), "name": "mismatch"}
    made = stack.api("POST", "/v1/services", json=body, headers=admin)
    assert made.status_code == 422 and made.json()["error"] == "invalid_tls", made.text
    assert "tls_cert_pem" in made.json()["message"]
    assert stack.api("GET", "/v1/services/mismatch", headers=admin).status_code == 404
