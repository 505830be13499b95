"""Knobs of the Azure provider (plain data; ``AzureConfig.from_settings`` fills them from Settings).

Resource layout: one resource group per region (``<resource_group_prefix>-<region>``, created in
that region) holding one virtual network with one subnet, shared by every Stratus VM of the region;
each VM gets its own network security group, NIC and (with ``address="public"``) static public IP.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from libs.runtime.settings import Settings

from .errors import LaunchError

DEFAULT_LOG_PORT = 8181


@dataclass(frozen=True)
class AzureConfig:
    # "<prefix>-<region>": the resource group (and its location) of a region's VMs.
    resource_group_prefix: str = "stratus"
    vnet_name: str = "stratus-vnet"
    vnet_prefix: str = "10.100.0.0/16"
    subnet_name: str = "stratus"
    subnet_prefix: str = "10.100.0.0/20"
    # Who may reach the service port, the log port and the task's ports: the router's (and
    # provisioner's) address range. Empty: the VNet's range for private addresses; a public
    # launch is refused (``ingress_ranges``).
    source_ranges: tuple[str, ...] = ()
    # Which address goes into the replica URL: "public" gives each VM a static public IP (a router
    # outside the VNet); "private" uses its VNet address and creates no public IP.
    address: Literal["public", "private"] = "public"
    log_port: int = DEFAULT_LOG_PORT
    # OS disk size when the task gives none (GB; the GPU images need about 64).
    disk_size_gb: int = 128
    disk_sku: str = "StandardSSD_LRS"
    admin_username: str = "stratus"
    # An OpenSSH public key for the admin user. None: a throwaway key (Azure requires one) and
    # nobody can log in; the NSG does not open port 22 either way unless the task asks for it.
    ssh_public_key: str | None = None
    # How long launch waits for the VM's creation (allocation failures arrive on it).
    operation_timeout_s: float = 900.0
    # Seconds between polls of a long-running operation when ARM gives no Retry-After.
    poll_interval_s: float = 5.0
    # Retries of throttled (429) or failed (5xx, connection) requests inside the SDK.
    retry_total: int = 3

    def __post_init__(self) -> None:
        for cidr in (*self.source_ranges, self.vnet_prefix, self.subnet_prefix):
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError as exc:
                raise LaunchError(f"azure config: {cidr!r} is not an address range (CIDR): {exc}") from None
        if self.address not in ("public", "private"):
            raise LaunchError(f"azure config: address must be 'public' or 'private', not {self.address!r}")
        if not 1 <= self.log_port <= 65535:
            raise LaunchError(f"azure config: log_port {self.log_port} is not a TCP port")

    @classmethod
    def from_settings(cls, settings: Settings) -> AzureConfig:
        """STRATUS_CLOUD_ADDRESS, STRATUS_CLOUD_INGRESS_CIDR (comma-separated), STRATUS_CLOUD_LOG_PORT."""
        address: Literal["public", "private"] = "private" if settings.cloud_address == "private" else "public"
        ranges = tuple(part.strip() for part in settings.cloud_ingress_cidr.split(",") if part.strip())
        try:
            return cls(address=address, source_ranges=ranges, log_port=settings.cloud_log_port)
        except LaunchError as exc:
            raise LaunchError(f"STRATUS_CLOUD_INGRESS_CIDR / STRATUS_CLOUD_LOG_PORT: {exc}") from None

    def ingress_ranges(self) -> tuple[str, ...]:
        """The NSG rules' source ranges; LaunchError when none is set for public VMs."""
        if self.source_ranges:
            return self.source_ranges
        if self.address == "private":
            return (self.vnet_prefix,)
        raise LaunchError(
            "no ingress range for public Azure VMs: set STRATUS_CLOUD_INGRESS_CIDR to the router's and "
            "provisioner's address range (e.g. 203.0.113.7/32), or STRATUS_CLOUD_ADDRESS=private when "
            "the control plane runs inside the VNet"
        )

    def resource_group(self, region: str) -> str:
        return f"{self.resource_group_prefix}-{region}"
