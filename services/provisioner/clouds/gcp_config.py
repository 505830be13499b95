"""Knobs of the GCP provider (plain data; the registry fills them from Settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DEFAULT_LOG_PORT = 8181


@dataclass(frozen=True)
class GcpConfig:
    # The VPC network instances join and the firewall rule applies to.
    network: str = "global/networks/default"
    # Who may reach the service port (and the log port): the router's source address range.
    # The default is every address, as SkyServe's replicas are; narrow it in production.
    source_ranges: tuple[str, ...] = ("0.0.0.0/0",)
    # Which address goes into the replica URL: "external" gives each VM an ephemeral public IP
    # (a router outside the VPC), "internal" uses its VPC address and gives it no public IP.
    address: Literal["external", "internal"] = "external"
    log_port: int = DEFAULT_LOG_PORT
    # Boot disk size when the task gives none (GB; GPU images need about 50).
    disk_size_gb: int = 100
    # How long launch waits for the insert operation (capacity errors arrive on it).
    operation_timeout_s: float = 300.0
    # How long launch waits for the new VM's address to be reported.
    address_timeout_s: float = 60.0
