"""Knobs of the GCP provider (plain data; ``GcpConfig.from_settings`` fills them from Settings)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from libs.runtime.settings import Settings

from .errors import LaunchError

DEFAULT_LOG_PORT = 8181
# The internal range of an auto-mode VPC (the ``default`` network): every region's subnet.
AUTO_MODE_VPC_RANGE = "10.128.0.0/9"


def parse_ranges(text: str, what: str = "STRATUS_CLOUD_INGRESS_CIDR") -> tuple[str, ...]:
    """Comma-separated CIDRs, normalized; a bad one is a LaunchError naming it and ``what``."""
    ranges = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            ranges.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError as exc:
            raise LaunchError(
                f"{what}: {item!r} is not an address range like 203.0.113.7/32 ({exc})"
            ) from exc
    return tuple(ranges)


@dataclass(frozen=True)
class GcpConfig:
    # The VPC network instances join and the firewall rule applies to.
    network: str = "global/networks/default"
    # Which address goes into the replica URL: "public" gives each VM an ephemeral external IP
    # (a control plane outside the VPC), "private" uses its VPC address and no external IP.
    address: Literal["public", "private"] = "public"
    # Who may reach the service and log ports: the router's (and provisioner's) address range.
    # Empty: the auto-mode VPC range for private addresses; a public launch is refused.
    source_ranges: tuple[str, ...] = ()
    log_port: int = DEFAULT_LOG_PORT
    # Boot disk size when the task gives none (GB; GPU images need about 50).
    disk_size_gb: int = 100
    # How long launch waits for the insert operation (capacity errors arrive on it).
    operation_timeout_s: float = 300.0
    # How long launch waits for the new VM's address to be reported.
    address_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.address not in ("public", "private"):
            raise LaunchError(f"gcp config: address must be 'public' or 'private', not {self.address!r}")
        if not 1 <= self.log_port <= 65535:
            raise LaunchError(f"gcp config: log_port {self.log_port} is not a TCP port")
        parse_ranges(",".join(self.source_ranges), "gcp config source_ranges")

    @classmethod
    def from_settings(cls, settings: Settings) -> GcpConfig:
        address: Literal["public", "private"] = "private" if settings.cloud_address == "private" else "public"
        return cls(
            address=address,
            source_ranges=parse_ranges(settings.cloud_ingress_cidr),
            log_port=settings.cloud_log_port,
        )

    def ingress_ranges(self) -> tuple[str, ...]:
        """The firewall rule's source ranges; LaunchError when none is set for public VMs."""
        if self.source_ranges:
            return self.source_ranges
        if self.address == "private":
            return (AUTO_MODE_VPC_RANGE,)
        raise LaunchError(
            "no ingress range for public GCP VMs: set STRATUS_CLOUD_INGRESS_CIDR to the router's and "
            "provisioner's address range (e.g. 203.0.113.7/32), or STRATUS_CLOUD_ADDRESS=private when "
            "the control plane runs inside the VPC"
        )
