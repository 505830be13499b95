"""The probe's I/O: one HTTP request to a replica, turned into a ``ProbeResult``.

Replicas are reached at ``http://host:port`` or, behind the local provider's unix-socket
bridge, at ``http+unix://<percent-encoded socket path>``. httpx and OS errors are translated
here into the prober's own (``errors.py``); the decision module never sees httpx.
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from urllib.parse import unquote, urlsplit

import httpx

from libs.fleet.policy import ProbePolicy

from .decide import ProbeResult, classify_error, classify_status
from .errors import (
    ProbeError,
    ProbeInvalidResponse,
    ProbeRefused,
    ProbeReset,
    ProbeTimeout,
    ProbeTransportError,
)

_REFUSED_ERRNOS = frozenset({errno.ECONNREFUSED, errno.ENOENT})  # ENOENT: no socket file (yet)


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and len(out) < 8:
        out.append(cur)
        cur = cur.__cause__ or cur.__context__
    return out


def translate(exc: BaseException, timeout_seconds: float) -> ProbeError:
    """The prober's error for what httpx (or the OS underneath it) raised."""
    chain = _chain(exc)
    if any(isinstance(e, (httpx.TimeoutException, TimeoutError)) for e in chain):
        return ProbeTimeout(timeout_seconds)
    if any(isinstance(e, OSError) and e.errno in _REFUSED_ERRNOS for e in chain):
        return ProbeRefused()
    if any(
        isinstance(e, (httpx.RemoteProtocolError, httpx.LocalProtocolError, httpx.DecodingError))
        for e in chain
    ):
        return ProbeInvalidResponse()
    if any(
        isinstance(e, ConnectionResetError) or (isinstance(e, OSError) and e.errno == errno.ECONNRESET)
        for e in chain
    ):
        return ProbeReset()
    detail = str(exc).strip()
    return ProbeTransportError(f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)


class HttpProber:
    """Keeps one client per transport (TCP, or each unix socket) and closes them all."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        # Redirects are followed, as SkyServe's probe (requests) does: 302 -> /ready -> 200 is READY.
        self._tcp = httpx.AsyncClient(follow_redirects=True, transport=transport)
        self._uds: dict[str, httpx.AsyncClient] = {}

    def _client_and_base(self, url: str) -> tuple[httpx.AsyncClient, str]:
        parts = urlsplit(url)
        if parts.scheme == "http+unix":
            path = unquote(parts.netloc)
            client = self._uds.get(path)
            if client is None:
                client = self._uds[path] = httpx.AsyncClient(
                    follow_redirects=True, transport=httpx.AsyncHTTPTransport(uds=path)
                )
            return client, "http://replica"
        return self._tcp, url.rstrip("/")

    async def probe(
        self, url: str, policy: ProbePolicy, headers: Mapping[str, str] | None = None
    ) -> ProbeResult:
        """One request; ``headers`` (the decrypted probe headers) replace ``policy.headers``."""
        try:
            status = await self._request(url, policy, policy.headers if headers is None else headers)
        except ProbeError as exc:
            return classify_error(exc)
        return classify_status(status)

    async def _request(self, url: str, policy: ProbePolicy, headers: Mapping[str, str]) -> int:
        client, base = self._client_and_base(url)
        try:
            resp = await client.request(
                policy.method, base + policy.path, json=policy.post_data, headers=dict(headers),
                timeout=policy.timeout_seconds,
            )  # fmt: skip
            await resp.aclose()
        except (httpx.HTTPError, OSError) as exc:
            raise translate(exc, policy.timeout_seconds) from exc
        return resp.status_code

    async def aclose(self) -> None:
        await self._tcp.aclose()
        for c in self._uds.values():
            await c.aclose()
        self._uds.clear()
