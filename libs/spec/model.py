"""The normalized service spec: what the rest of Stratus reads, whatever shorthand the YAML used.

Field names of ``ServiceSection`` are SkyServe's own (``readiness_path``, ``min_replicas``, ...)
so the JSON form reads like SkyServe's. Every field has a default where one makes sense, so
specs stored in older events still decode when fields are added.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec

DEFAULT_INITIAL_DELAY_SECONDS = 1200
DEFAULT_READINESS_TIMEOUT_SECONDS = 15
DEFAULT_UPSCALE_DELAY_SECONDS = 300
DEFAULT_DOWNSCALE_DELAY_SECONDS = 1200
DEFAULT_ENDPOINT_PROBE_INTERVAL_SECONDS = 10
DEFAULT_STREAM_TIMEOUT_SECONDS = 120
DEFAULT_LOAD_BALANCING_POLICY = "least_load"
INSTANCE_AWARE_POLICY = "instance_aware_least_load"
LOAD_BALANCING_POLICIES = ("round_robin", "least_load", INSTANCE_AWARE_POLICY)
SPOT_PLACERS = ("dynamic_fallback",)
DISK_TIERS = ("low", "medium", "high", "ultra", "best")
NETWORK_TIERS = ("standard", "best")  # SkyPilot's NetworkTier (a hint: no provider acts on it yet)
REDACTED = "<redacted>"


class ReadinessProbe(msgspec.Struct, frozen=True, kw_only=True):
    """How the prober decides that a replica is ready (a view over ``ServiceSection``)."""

    path: str
    post_data: dict[str, Any] | None
    initial_delay_seconds: int | float
    timeout_seconds: int | float
    headers: dict[str, str]
    interval_seconds: int | float | None = DEFAULT_ENDPOINT_PROBE_INTERVAL_SECONDS
    # None: not written; the prober's default (SkyServe's 180 s) applies.
    failure_threshold_seconds: int | float | None = None

    def __repr__(self) -> str:  # header values are secrets
        headers = {k: REDACTED for k in self.headers}
        return f"ReadinessProbe(path={self.path!r}, headers={headers!r}, ...)"

    @property
    def method(self) -> str:
        return "GET" if self.post_data is None else "POST"


class Tls(msgspec.Struct, frozen=True, kw_only=True):
    keyfile: str
    certfile: str


class ServiceSection(msgspec.Struct, frozen=True, kw_only=True):
    """The ``service:`` section, flattened as SkyServe does. Fixed ``replicas: N`` is min=max=N.

    Durations are seconds, fractional where SkyServe's schema takes a number. A mapping
    ``target_qps_per_replica`` ({accelerator: QPS}) goes with ``instance_aware_least_load``.
    """

    readiness_path: str = "/"
    initial_delay_seconds: int | float = DEFAULT_INITIAL_DELAY_SECONDS
    readiness_timeout_seconds: int | float = DEFAULT_READINESS_TIMEOUT_SECONDS
    # The parser always sets it (SkyServe's default 10 when omitted); None only in specs recorded
    # before the field existed, which keep the prober's own interval.
    endpoint_probe_interval_seconds: int | float | None = None
    consecutive_failure_threshold_timeout: int | float | None = None
    post_data: dict[str, Any] | None = None
    headers: dict[str, str] = {}
    min_replicas: int = 1
    max_replicas: int = 1
    target_qps_per_replica: float | dict[str, float] | None = None
    upscale_delay_seconds: int | float = DEFAULT_UPSCALE_DELAY_SECONDS
    downscale_delay_seconds: int | float = DEFAULT_DOWNSCALE_DELAY_SECONDS
    num_overprovision: int = 0
    base_ondemand_fallback_replicas: int = 0
    dynamic_ondemand_fallback: bool = False
    spot_placer: str | None = None
    load_balancing_policy: str = DEFAULT_LOAD_BALANCING_POLICY
    # load_balancer.stream_timeout_seconds: how long the router waits on a replica's response.
    stream_timeout_seconds: int | float = DEFAULT_STREAM_TIMEOUT_SECONDS
    # The port the router forwards to: service.ports, else the single port of resources.ports.
    ports: int
    tls: Tls | None = None

    def __repr__(self) -> str:  # header values are secrets (Authorization: Bearer ...)
        fields = (
            (f, {k: REDACTED for k in self.headers} if f == "headers" else getattr(self, f))
            for f in self.__struct_fields__
        )
        return "ServiceSection(" + ", ".join(f"{k}={v!r}" for k, v in fields) + ")"

    @property
    def readiness_probe(self) -> ReadinessProbe:
        return ReadinessProbe(
            path=self.readiness_path,
            post_data=self.post_data,
            initial_delay_seconds=self.initial_delay_seconds,
            timeout_seconds=self.readiness_timeout_seconds,
            headers=self.headers,
            interval_seconds=self.endpoint_probe_interval_seconds,
            failure_threshold_seconds=self.consecutive_failure_threshold_timeout,
        )

    @property
    def is_autoscaling(self) -> bool:
        return self.target_qps_per_replica is not None


class ResourceCandidate(msgspec.Struct, frozen=True):
    """One concrete choice of resources for a replica (no alternatives inside)."""

    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    # Exactly one accelerator name -> count, or None for CPU-only.
    accelerators: dict[str, int | float] | None = None
    accelerator_args: dict[str, Any] | None = None
    cpus: str | None = None
    memory: str | None = None
    use_spot: bool = False
    job_recovery: dict[str, Any] | None = None
    disk_size: int | None = None
    disk_tier: str | None = None
    network_tier: str | None = None
    ports: list[int] = []
    image_id: str | dict[str, str] | None = None
    labels: dict[str, str] = {}


class Resources(ResourceCandidate, frozen=True):
    """``resources:``. A set or list of accelerators, ``any_of`` or ``ordered`` all become
    ``any_of``: fully merged candidates (base fields overridden by each entry); ``ordered``
    says whether their order is a preference. With no alternatives ``any_of`` is empty."""

    any_of: list[ResourceCandidate] = []
    ordered: bool = False

    def candidates(self) -> list[ResourceCandidate]:
        """The choices a placer picks from: the alternatives, or the base resources alone."""
        if self.any_of:
            return list(self.any_of)
        fields = {f: getattr(self, f) for f in ResourceCandidate.__struct_fields__}
        return [ResourceCandidate(**fields)]


class ServiceSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A whole service YAML, normalized. ``secrets`` never appear in ``repr``."""

    name: str | None = None
    service: ServiceSection
    resources: Resources
    envs: dict[str, str] = {}
    secrets: dict[str, str] = {}
    setup: str | None = None
    run: str
    workdir: str | None = None
    file_mounts: dict[str, str | dict[str, Any]] = {}
    num_nodes: int = 1  # nodes per replica (SkyServe's num_nodes; see launch.check_launchable)

    def _redacted_fields(self) -> Iterator[tuple[str, Any]]:
        for field in self.__struct_fields__:
            value = getattr(self, field)
            yield field, ({key: REDACTED for key in value} if field == "secrets" else value)

    def __repr__(self) -> str:
        return "ServiceSpec(" + ", ".join(f"{k}={v!r}" for k, v in self._redacted_fields()) + ")"

    def __rich_repr__(self) -> list[tuple[str, Any]]:
        return list(self._redacted_fields())

    @property
    def service_port(self) -> int:
        return self.service.ports

    @property
    def readiness_probe(self) -> ReadinessProbe:
        return self.service.readiness_probe

    @property
    def min_replicas(self) -> int:
        return self.service.min_replicas

    @property
    def max_replicas(self) -> int:
        return self.service.max_replicas

    @property
    def is_autoscaling(self) -> bool:
        return self.service.is_autoscaling
