"""Endpoint security for the router service: TLS pairs and API keys from the secrets tables.

The API stores a service's certificate and (encrypted) key when ``up``/``update`` sends them,
and its endpoint API keys as hashes (``libs/secrets/endpoint.py``). The router reads them when
it learns a service or a new version of it (TLS), and on ``EndpointKeysChanged`` and every
resync (keys: a revocation takes effect within one resync even if the event was missed).
A service whose spec asks for TLS and whose pair cannot be read gets no endpoint (never a
plain-HTTP one), and a key table that cannot be read on first use refuses every request.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from pathlib import Path

import asyncpg

from libs.fleet.state import ServiceState
from libs.secrets import SecretsError
from libs.secrets.endpoint import (
    EndpointKeys,
    key_hash,
    load_endpoint_keys,
    load_endpoint_tls,
    server_context,
)

from .endpoint import ServiceEndpoint

log = logging.getLogger("stratus.router")

KeyCheck = Callable[[bytes], bool]


def wants_tls(svc: ServiceState) -> bool:
    return svc.latest.typed.service.tls is not None


def key_check(service: str, keys: EndpointKeys) -> KeyCheck | None:
    """What the endpoint runs on a presented key; None when the service never had a key."""
    if not keys.required:
        return None
    hashes = keys.hashes

    def check(raw: bytes) -> bool:
        return key_hash(service, raw) in hashes

    return check


def _deny(raw: bytes) -> bool:
    return False


class EndpointSecurity:
    """Per service: the TLS context (and the version it came from) and the loaded keys."""

    def __init__(self, pool: Callable[[], asyncpg.Pool], home: Path) -> None:
        self._pool = pool  # the host's, once it is connected
        self.home = home
        self.tls_version: dict[str, int] = {}  # the version whose pair the endpoint serves
        self.checked: dict[str, int] = {}  # the service version last looked at
        self.refused: dict[str, int] = {}  # the version whose pair could not be loaded (logged)
        self.keys: dict[str, EndpointKeys] = {}

    @property
    def pool(self) -> asyncpg.Pool:
        return self._pool()

    async def tls_context(self, name: str, svc: ServiceState) -> tuple[bool, ssl.SSLContext | None]:
        """``(ok, context)`` for a new endpoint: ok False when the spec wants TLS and the pair is
        missing or unreadable (then no endpoint is opened; logged once per service version)."""
        if not wants_tls(svc):
            return True, None
        try:
            pair = await load_endpoint_tls(self.pool, name, self.home)
            if pair is None:
                raise SecretsError("service.tls is set but no certificate was stored")
            ctx = server_context(pair.cert_pem, pair.key_pem)
        except SecretsError as exc:
            if self.refused.get(name) != svc.latest_version:
                self.refused[name] = svc.latest_version
                log.error("%s: cannot load the endpoint's TLS certificate: %s; no endpoint", name, exc)
            return False, None
        self.refused.pop(name, None)
        self.tls_version[name] = pair.version
        self.checked[name] = svc.latest_version
        return True, ctx

    async def refresh_tls(self, name: str, svc: ServiceState, ep: ServiceEndpoint) -> bool:
        """Load a newer pair into the endpoint's context (new handshakes use it). False when the
        endpoint must be reopened: TLS turned on or off by an update."""
        if wants_tls(svc) != (ep.tls is not None):
            return False
        if ep.tls is None or self.checked.get(name) == svc.latest_version:
            return True
        try:
            pair = await load_endpoint_tls(self.pool, name, self.home)
            if pair is not None and pair.version != self.tls_version.get(name):
                server_context(pair.cert_pem, pair.key_pem, context=ep.tls)
                self.tls_version[name] = pair.version
                log.info("%s: TLS certificate of version %d loaded", name, pair.version)
            self.checked[name] = svc.latest_version
        except SecretsError as exc:
            log.error("%s: cannot load the new TLS certificate (keeping the old one): %s", name, exc)
        return True

    async def load_keys(self, name: str, ep: ServiceEndpoint) -> None:
        try:
            keys = await load_endpoint_keys(self.pool, name)
        except SecretsError as exc:
            if name not in self.keys:
                ep.key_check = _deny
            log.warning("%s: cannot read the endpoint API keys (%s); keeping what was loaded", name, exc)
            return
        if self.keys.get(name) != keys:
            self.keys[name] = keys
            ep.key_check = key_check(name, keys)
            if keys.required:
                log.info("%s: endpoint requires an API key (%d valid)", name, len(keys.hashes))

    def forget(self, name: str) -> None:
        self.tls_version.pop(name, None)
        self.checked.pop(name, None)
        self.refused.pop(name, None)
        self.keys.pop(name, None)
