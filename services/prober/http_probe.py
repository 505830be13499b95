"""The probe's I/O: one HTTP request to a replica, turned into a ``ProbeResult``.

Replicas are reached at ``http://host:port`` or, behind the local provider's unix-socket
bridge, at ``http+unix://<percent-encoded socket path>``.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

import httpx

from libs.fleet.policy import ProbePolicy

from .decide import ProbeResult, classify_error, classify_status


class HttpProber:
    """Keeps one client per transport (TCP, or each unix socket) and closes them all."""

    def __init__(self) -> None:
        self._tcp = httpx.AsyncClient(follow_redirects=False)
        self._uds: dict[str, httpx.AsyncClient] = {}

    def _client_and_base(self, url: str) -> tuple[httpx.AsyncClient, str]:
        parts = urlsplit(url)
        if parts.scheme == "http+unix":
            path = unquote(parts.netloc)
            client = self._uds.get(path)
            if client is None:
                client = self._uds[path] = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=path))
            return client, "http://replica"
        return self._tcp, url.rstrip("/")

    async def probe(self, url: str, policy: ProbePolicy) -> ProbeResult:
        client, base = self._client_and_base(url)
        try:
            resp = await client.request(
                policy.method, base + policy.path, json=policy.post_data, headers=policy.headers,
                timeout=policy.timeout_seconds,
            )  # fmt: skip
            await resp.aclose()
        except (httpx.HTTPError, OSError) as exc:
            return classify_error(exc, policy.timeout_seconds)
        return classify_status(resp.status_code)

    async def aclose(self) -> None:
        await self._tcp.aclose()
        for c in self._uds.values():
            await c.aclose()
        self._uds.clear()
