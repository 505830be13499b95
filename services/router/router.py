"""The router: every service's endpoint and replica pool in one process."""

from __future__ import annotations

import ssl

from services.router.balance import DEFAULT_POLICY
from services.router.endpoint import ServiceEndpoint
from services.router.errors import ConfigError, UnknownService
from services.router.options import EndpointOptions
from services.router.replicas import ReplicaPool


class Router:
    """Holds one :class:`ServiceEndpoint` (and its :class:`ReplicaPool`) per service.

    ``host`` is the address endpoints listen on unless ``add_service`` says
    otherwise; ``options`` are the defaults for new endpoints.
    """

    def __init__(self, host: str = "127.0.0.1", options: EndpointOptions | None = None) -> None:
        self.host = host
        self.options = options if options is not None else EndpointOptions()
        self._endpoints: dict[str, ServiceEndpoint] = {}

    async def add_service(
        self,
        name: str,
        port: int = 0,
        policy: str | None = DEFAULT_POLICY,
        *,
        options: EndpointOptions | None = None,
        host: str | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> int:
        """Start serving ``name`` on ``port`` (0: ephemeral); returns the bound port.

        Idempotent: for a service already added, the policy is updated and its
        port returned (asking for a different non-zero port is an error). With ``tls``
        the endpoint serves HTTPS.
        """
        ep = self._endpoints.get(name)
        if ep is not None:
            if port and port != ep.port:
                raise ConfigError(f"service {name} already listens on port {ep.port}, not {port}")
            ep.pool.set_policy(policy or DEFAULT_POLICY)
            assert ep.port is not None
            return ep.port
        pool = ReplicaPool(name, policy)
        opts = options if options is not None else self.options
        ep = ServiceEndpoint(pool, opts)
        self._endpoints[name] = ep
        try:
            return await ep.start(host if host is not None else self.host, port, tls=tls)
        except BaseException:
            self._endpoints.pop(name, None)
            await ep.close()
            raise

    async def remove_service(self, name: str, grace: float = 0.0) -> None:
        """Stop serving ``name`` (in-flight requests get ``grace`` seconds)."""
        ep = self._endpoints.pop(name, None)
        if ep is None:
            raise UnknownService(f"unknown service {name!r}")
        await ep.close(grace)

    def pool(self, name: str) -> ReplicaPool:
        return self.endpoint(name).pool

    def endpoint(self, name: str) -> ServiceEndpoint:
        ep = self._endpoints.get(name)
        if ep is None:
            raise UnknownService(f"unknown service {name!r}")
        return ep

    def services(self) -> list[str]:
        return sorted(self._endpoints)

    def __contains__(self, name: object) -> bool:
        return name in self._endpoints

    def take_request_counts(self) -> dict[str, int]:
        """Per service, requests received since the last call (resets the counters)."""
        return {name: ep.take_request_count() for name, ep in self._endpoints.items()}

    async def close(self, grace: float = 0.0) -> None:
        endpoints, self._endpoints = list(self._endpoints.values()), {}
        for ep in endpoints:
            await ep.close(grace)
