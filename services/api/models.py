"""Pydantic models of the HTTP boundary (requests and responses), nothing else uses them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

UpdateMode = Literal["rolling", "blue_green"]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SpecSource(_Request):
    """A service spec: YAML text (``yaml``) or the same document as a JSON object (``spec``)."""

    yaml: str | None = Field(default=None, description="The service YAML text, as written by the user.")
    spec: dict[str, Any] | None = Field(
        default=None, description="The service YAML document as a JSON object."
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Env overrides (``--env KEY=VALUE``). Values of secret-looking names "
        "are stored encrypted, never in events.",
    )
    dry_run: bool = Field(False, description="Validate and show the plan; record nothing.")
    tls_cert_pem: str | None = Field(
        default=None, description="With ``service.tls``: the PEM certificate (the CLI reads certfile)."
    )
    tls_key_pem: str | None = Field(
        default=None, repr=False,
        description="With ``service.tls``: the PEM private key (the CLI reads keyfile); stored "
        "encrypted, never in events.",
    )  # fmt: skip


class CreateServiceRequest(SpecSource):
    name: str | None = Field(
        default=None, description="Service name; defaults to the spec's ``name``, else a generated one."
    )


class UpdateServiceRequest(SpecSource):
    mode: UpdateMode = "rolling"


class IssueOut(BaseModel):
    field: str = Field(description="The field path, as written in the YAML ('' = the document).")
    message: str
    line: int | None = None


class ErrorOut(BaseModel):
    error: str = Field(description="A stable code: not_found, conflict, invalid_spec, invalid_request, ...")
    message: str = Field(description="What went wrong and what to do about it.")
    issues: list[IssueOut] = []


class PlanOut(BaseModel):
    """What ``create``/``update`` will do (or did): the normalized spec with secrets redacted."""

    name: str
    version: int
    dry_run: bool
    summary: list[str]
    spec: dict[str, Any]
    secret_envs: list[str]
    mode: UpdateMode | None = None
    position: int | None = Field(
        default=None, description="Log position of the recorded event (None on dry run)."
    )
    placement: dict[str, Any] | None = Field(
        default=None,
        description="The first replica's placement from the catalog: cloud, region, zone, instance_type, "
        "accelerators, use_spot, price_per_hour, reason (placed false: why not yet).",
    )


class AcceptedOut(BaseModel):
    message: str
    service: str
    position: int
    replica_id: int | None = None


class ReplicaOut(BaseModel):
    service: str
    replica_id: int
    version: int
    status: str
    status_reason: str | None = None
    url: str | None = None
    instance_id: str | None = None
    ip: str | None = None
    cloud: str | None = None
    region: str | None = None
    zone: str | None = None
    instance_type: str | None = None
    accelerators: dict[str, float] = {}
    use_spot: bool = False
    price_per_hour: float | None = None
    resources: str = Field(default="-", description="SkyServe-style, e.g. 1x GCP([Spot]{'L4': 1})")
    launched_at: datetime | None = None
    placement_reason: str | None = Field(
        default=None, description="Why the scheduler placed it there: price, offers, locations blocked."
    )


class AutoscalingOut(BaseModel):
    policy: Literal["fixed", "autoscaling"]
    min_replicas: int
    max_replicas: int
    target_qps_per_replica: float | None = None
    target_qps_per_accelerator: dict[str, float] | None = Field(
        default=None, description="instance_aware_least_load: the target QPS of a replica per accelerator."
    )
    upscale_delay_seconds: int | float | None = None  # SkyServe allows fractional seconds
    downscale_delay_seconds: int | float | None = None
    num_overprovision: int = 0
    base_ondemand_fallback_replicas: int = 0
    dynamic_ondemand_fallback: bool = False
    current_replicas: int
    target_replicas: int | None = None
    last_decision_reason: str | None = None
    last_decision_at: datetime | None = None


class ServiceOut(BaseModel):
    name: str
    status: str
    status_reason: str | None = None
    version: int = Field(description="The latest requested version.")
    versions: list[int] = Field(description="Versions that have live replicas (or the latest one).")
    endpoint: str | None = None
    created_at: datetime | None = None
    ready_since: datetime | None = None
    uptime_seconds: float | None = None
    replicas_ready: int
    replicas_total: int
    autoscaling: AutoscalingOut | None = None
    update_mode: UpdateMode | None = None
    replicas: list[ReplicaOut] = []
    spec: dict[str, Any] = Field(default_factory=dict, description="The latest spec, secrets redacted.")


class ServiceListOut(BaseModel):
    services: list[ServiceOut]
    position: int = Field(description="The log position this view reflects.")


class EventOut(BaseModel):
    position: int
    event_id: str
    stream_id: str
    stream_version: int
    type: str
    service: str
    occurred_at: datetime
    data: dict[str, Any]
    causation_id: str | None = None
    correlation_id: str | None = None


class EventPageOut(BaseModel):
    events: list[EventOut]
    next_after: int = Field(description="Pass as ``after`` to get the next page.")
    has_more: bool = Field(description="True when the log may hold more matching events after next_after.")


class HealthOut(BaseModel):
    status: Literal["ok", "failing"]
    position: int
    lag: int = Field(0, description="Log positions the projection has not folded yet (-1: unknown).")
    skipped: int = Field(0, description="Events of types this version does not know, passed over.")
    failure: str = Field("", description="Why the projection stopped (status failing, HTTP 503).")
