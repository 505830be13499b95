"""Endpoint API keys and TLS at the router (issue 8), on real sockets and a real TLS handshake."""

from __future__ import annotations

import ssl
from collections.abc import Callable

import httpx
import pytest
from router_backend import BackendFactory, EndpointFactory
from router_client import Conn, request
from tls_cert import self_signed

from libs.secrets.endpoint import check_tls_pair, key_hash, new_key, server_context
from libs.secrets.errors import EndpointTlsInvalid
from services.router import EndpointOptions, ReplicaPool, ServiceEndpoint


def _checker(service: str, *keys: str) -> Callable[[bytes], bool]:
    hashes = frozenset(key_hash(service, k) for k in keys)
    return lambda raw: key_hash(service, raw) in hashes


async def test_requests_need_a_valid_key(backends: BackendFactory, endpoint: EndpointFactory) -> None:
    b = await backends()
    ep = await endpoint(b)
    _, good = new_key()
    _, other = new_key()
    ep.key_check = _checker("svc", good)
    r = await request(ep.port, "GET", "/echo")
    assert r.status == 401 and r.json()["error"].startswith("an endpoint API key is required")
    assert r.header("www-authenticate") == 'Bearer realm="stratus endpoint"'
    for value in (f"Bearer {other}", "Bearer ", f"Basic {good}", good):
        r = await request(ep.port, "GET", "/echo", headers=[("Authorization", value)])
        assert r.status == 401 and "not valid" in r.json()["error"], value
    r = await request(ep.port, "POST", "/echo", headers=[("Authorization", "Bearer nope")], body=b"x" * 5000)
    assert r.status == 401
    assert b.requests == []  # nothing reached the replica
    r = await request(ep.port, "GET", "/echo", headers=[("authorization", f"bearer {good}")])
    assert r.status == 200
    # the key stays at the router
    assert "authorization" not in {k.lower() for k, _ in b.requests[-1].headers}
    ep.key_check = None  # open again
    assert (await request(ep.port, "GET", "/echo")).status == 200


def test_a_key_hash_is_bound_to_its_service() -> None:
    key_id, key = new_key()
    assert key.startswith(f"stk_{key_id}_") and len(key) > 40
    assert key_hash("a", key) != key_hash("b", key)
    assert key_hash("a", key) == key_hash("a", key.encode())


async def test_keep_alive_connection_checks_every_request(
    backends: BackendFactory, endpoint: EndpointFactory
) -> None:
    b = await backends()
    ep = await endpoint(b)
    _, old = new_key()
    _, new = new_key()
    ep.key_check = _checker("svc", old)
    c = await Conn.open(ep.port)
    try:
        auth = [("Authorization", f"Bearer {old}")]
        assert (await c.request("GET", "/echo", headers=auth)).status == 200
        ep.key_check = _checker("svc", old, new)  # rotation: both valid
        assert (await c.request("GET", "/echo", headers=auth)).status == 200
        assert (await c.request("GET", "/echo", headers=[("Authorization", f"Bearer {new}")])).status == 200
        ep.key_check = _checker("svc", new)  # the old one revoked
        r = await c.request("GET", "/echo", headers=auth)
        assert r.status == 401 and r.header("connection") != "close"  # the connection stays usable
        assert (await c.request("GET", "/echo", headers=[("Authorization", f"Bearer {new}")])).status == 200
    finally:
        await c.close()


async def test_tls_endpoint_serves_https_with_the_certificate(backends: BackendFactory) -> None:
    b = await backends()
    cert_pem, key_pem = self_signed("stratus-tls-test")
    pool = ReplicaPool("tls")
    pool.set_ready(1, b.url)
    ep = ServiceEndpoint(pool, EndpointOptions())
    port = await ep.start("127.0.0.1", 0, tls=server_context(cert_pem, key_pem))
    try:
        verify = ssl.create_default_context(cadata=cert_pem)
        async with httpx.AsyncClient(verify=verify) as client:
            r = await client.get(f"https://127.0.0.1:{port}/echo")
            assert r.status_code == 200 and r.json()["backend"] == "b"
            stream = r.extensions["network_stream"]
            peer = stream.get_extra_info("ssl_object").getpeercert(binary_form=True)
        assert ssl.DER_cert_to_PEM_cert(peer).strip() == cert_pem.strip()
        with pytest.raises(httpx.ConnectError):  # a client that does not trust it refuses it
            async with httpx.AsyncClient() as client:
                await client.get(f"https://127.0.0.1:{port}/echo")
    finally:
        await ep.close()


def test_tls_pair_is_checked() -> None:
    cert_pem, key_pem = self_signed()
    _, other_key = self_signed()
    check_tls_pair(cert_pem, key_pem)
    with pytest.raises(EndpointTlsInvalid, match="do not make a TLS server"):
        check_tls_pair(cert_pem, other_key)
    with pytest.raises(EndpointTlsInvalid, match="not a PEM certificate"):
        check_tls_pair("hello", key_pem)
    with pytest.raises(EndpointTlsInvalid, match="not a PEM private key"):
        check_tls_pair(cert_pem, "hello")
