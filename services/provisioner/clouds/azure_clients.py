"""The three ARM SDK clients a provider uses, built once with the same pipeline options.

``base_url`` and ``connection_verify`` exist for tests (a fake ARM over TLS on loopback with its
own CA); production uses the public cloud's endpoint and the system's trust store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.credentials import TokenCredential
from azure.mgmt.compute import ComputeManagementClient
from azure.mgmt.network import NetworkManagementClient
from azure.mgmt.resource.resources import ResourceManagementClient

from .azure_config import AzureConfig

ARM_SCOPE = "https://management.azure.com/.default"
# Seconds one HTTP request may take to connect / to answer.
CONNECT_TIMEOUT_S = 10
READ_TIMEOUT_S = 60


@dataclass
class AzureClients:
    compute: ComputeManagementClient
    network: NetworkManagementClient
    resource: ResourceManagementClient

    @classmethod
    def build(
        cls,
        subscription_id: str,
        credential: TokenCredential,
        config: AzureConfig,
        *,
        base_url: str | None = None,
        connection_verify: str | bool = True,
    ) -> AzureClients:
        options: dict[str, Any] = {
            "polling_interval": config.poll_interval_s,
            "retry_total": config.retry_total,
            "connection_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
            "connection_verify": connection_verify,
        }
        if base_url is not None:
            options["base_url"] = base_url
            options["credential_scopes"] = [ARM_SCOPE]
        return cls(
            compute=ComputeManagementClient(credential, subscription_id, **options),
            network=NetworkManagementClient(credential, subscription_id, **options),
            resource=ResourceManagementClient(credential, subscription_id, **options),
        )

    def close(self) -> None:
        self.compute.close()
        self.network.close()
        self.resource.close()
