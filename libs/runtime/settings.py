"""Settings every Stratus process reads from its environment (no module-level singletons).

This docstring is the one list of the environment variables Stratus reads (docs/settings.md
repeats it for the README). Every one is optional; a value that cannot be read is an error
naming the variable (``SettingsError``), not a silent default.

Where things are
    STRATUS_HOME                      state directory (logs, replica working copies, embedded
                                      servers); default ~/.stratus
    NATS_URL                          NATS with JetStream; default nats://127.0.0.1:4222 (the local
                                      stack starts its own nats-server when unset)
    DATABASE_URL                      Postgres holding the event log; default
                                      postgresql://postgres@127.0.0.1:5432/postgres (the local
                                      stack starts its own Postgres when unset)
    STRATUS_API_URL                   where the CLI finds the API and the API binds;
                                      default http://127.0.0.1:8765
    STRATUS_BUS_PREFIX                subject prefix / stream name suffix, so several stacks can
                                      share a NATS; default stratus
    STRATUS_LOG_LEVEL                 log level of every component; default INFO
    STRATUS_LOG_MAX_BYTES             a component log is rotated at this size; default 10000000
    STRATUS_LOG_BACKUPS               rotated files kept per component log; default 3

Loops (seconds)
    STRATUS_RESYNC_INTERVAL           periodic full reconcile of the scheduler and the router
                                      (default 2) and of the provisioner (default 5)
    STRATUS_MONITOR_INTERVAL          provisioner: how often replicas' processes are checked; 1
    STRATUS_PROBE_INTERVAL            prober: one round of readiness probes; default 1
    STRATUS_QPS_INTERVAL              router: how often request counts are recorded; default 10
    STRATUS_DECISION_INTERVAL         autoscaler: how often every service is re-decided; 20

Policy
    STRATUS_DRAIN_SECONDS             how long a replica being removed is drained (scheduler, and
                                      the API's ``down --replica-id``); default 30
    STRATUS_MAX_CONCURRENT_LAUNCHES   scheduler: replicas launching at once; default 4
    STRATUS_RETRY_BACKOFF_SECONDS     scheduler: first delay before relaunching after a
                                      retryable launch failure; default 5
    STRATUS_SPOT_POLICY               scheduler: the ``spot_placer: dynamic_fallback`` policy,
                                      stratus (default), skyserve (SpotHedge) or round_robin
                                      (libs/placement/spot_policy.py)
    STRATUS_PROBE_FAILURE_THRESHOLD   prober: seconds of failing probes before a replica has
                                      failed; default 180
    STRATUS_QPS_WINDOW                autoscaler: seconds of request counts one decision reads; 60
    STRATUS_HOLD_QUEUE                router: requests held while a service scales from zero; 1000
    STRATUS_HOLD_SECONDS              router: how long a held request waits; default 120

API (see services/api/README.md, "Security")
    STRATUS_API_TOKEN                 the CLI's bearer token; default the local admin token file
                                      STRATUS_HOME/auth/admin.token (written by the API at its
                                      first start, mode 0600)
    STRATUS_API_MAX_BODY_BYTES        largest request body the API reads; default 1048576
    STRATUS_API_CORS_ORIGINS          comma-separated origins allowed cross-origin; default none
                                      (no CORS headers at all)
    STRATUS_API_TLS_CERTFILE          with STRATUS_API_TLS_KEYFILE: the API serves HTTPS;
    STRATUS_API_TLS_KEYFILE           default plain HTTP (on 127.0.0.1 only, by default)

Router identity
    STRATUS_ROUTER_HOST               address the router binds service endpoints on; 127.0.0.1
    STRATUS_ROUTER_ID                 this router's id in QPS samples and drains;
                                      default router-<hostname>
    STRATUS_ROUTER_ADVERTISE          address written into endpoints; default the bind address
                                      (127.0.0.1 when binding every interface)

Router bounds on clients (an over-limit or too-slow request gets a 4xx and the connection closes)
    STRATUS_ROUTER_MAX_URL_BYTES      longest request target; 414 past it; default 8192
    STRATUS_ROUTER_MAX_HEADERS        most header fields in a request; 431 past it; default 100
    STRATUS_ROUTER_MAX_HEADER_BYTES   largest request head; 431 past it; default 65536
    STRATUS_ROUTER_HEAD_TIMEOUT       seconds to receive a whole request head (from the
                                      connection or its first byte); 408 past it; default 30
    STRATUS_ROUTER_BODY_TIMEOUT       seconds a request body may go without a byte arriving;
                                      408 past it; default 60
    STRATUS_ROUTER_IDLE_TIMEOUT       seconds an idle keep-alive client connection is kept; 75
    STRATUS_ROUTER_METRICS            on (default) or off: off, the router counts no requests
                                      (no stratus_router_* metrics; QPS for the autoscaler stays)

Clouds (the provisioner's cloud providers; see services/provisioner/clouds/)
    STRATUS_CLOUD_ADDRESS             which address of a cloud VM the router and prober use:
                                      public (default) or private (control plane in the VPC)
    STRATUS_CLOUD_INGRESS_CIDR        source range opened to a VM's service and log ports (the
                                      router's and provisioner's address, e.g. 203.0.113.7/32);
                                      default: the VPC's range when the address is private, and
                                      a public-address launch is refused until it is set
    STRATUS_CLOUD_LOG_PORT            port of a VM's log server; default 8181
    STRATUS_BOOTSTRAP_URL             the API's POST /v1/bootstrap as a VM reaches it; default
                                      STRATUS_API_URL + /v1/bootstrap
    STRATUS_BOOTSTRAP_TTL             seconds a VM's one-time bootstrap token lives; default 1800
    STRATUS_CLOUD_CHECK_INTERVAL      seconds between the provisioner's credential checks; 300
    STRATUS_AWS_REGIONS               comma-separated regions the AWS provider lists instances
                                      in after a restart; default every enabled region

Scale-out and bounded logs (see docs/ha.md)
    STRATUS_SNAPSHOT_INTERVAL         seconds between snapshots of a process's fleet projection
                                      (also written on shutdown); default 30
    STRATUS_BUS_MAX_AGE               seconds JetStream keeps a message (Postgres keeps every
                                      event; the relay republishes on demand); default 604800
    STRATUS_BUS_MAX_BYTES             bytes the JetStream stream may hold; default 1073741824
    STRATUS_CONSUMER_INACTIVE         seconds an unused JetStream consumer is kept; default 3600
    STRATUS_TRACKING_PRUNE_INTERVAL   seconds between prunes of a consumer's tracking rows
                                      below its floor; default 30
    STRATUS_LEASE_TTL                 seconds a leader's lease lasts unless renewed (prober,
                                      relay); a partitioned leader is replaced after it; default 5
    STRATUS_LEASE_RENEW               seconds between lease renewals; default 1
    STRATUS_INSTANCES                 local stack: instances of each service; default 1

Tracing (the standard OpenTelemetry variables; libs/telemetry/tracing.py, docs/operations.md)
    OTEL_EXPORTER_OTLP_ENDPOINT       OTLP/HTTP collector base URL (spans go to <it>/v1/traces);
                                      set, every process exports its spans; default none (off)
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT  the full traces URL, instead of the one above
    OTEL_TRACES_EXPORTER              comma list of otlp, console, none; default otlp when an
                                      endpoint is set (none: off whatever else is set)
    OTEL_SERVICE_NAME                 service.name of every process; default stratus-<component>
    OTEL_SDK_DISABLED                 true: tracing off
    (The OpenTelemetry SDK reads its other variables itself: OTEL_EXPORTER_OTLP_HEADERS,
    ..._TIMEOUT, ..._COMPRESSION, OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_RESOURCE_ATTRIBUTES.)

Not settings, and so not here: what the provisioner passes to replicas (``STRATUS_REPLICA_ID``,
``STRATUS_SERVICE_NAME`` and the like), the supervisor's ``STRATUS_COMPONENT``, and
``STRATUS_BOOTSTRAP_TOKEN`` / ``STRATUS_ROOT`` on a cloud VM.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SettingsError

DEFAULT_API_PORT = 8765

# Field name -> environment variable. Every field but ``home`` and ``given`` is read this way.
ENV_VARS: dict[str, str] = {
    "nats_url": "NATS_URL",
    "database_url": "DATABASE_URL",
    "api_url": "STRATUS_API_URL",
    "bus_prefix": "STRATUS_BUS_PREFIX",
    "log_level": "STRATUS_LOG_LEVEL",
    "log_max_bytes": "STRATUS_LOG_MAX_BYTES",
    "log_backups": "STRATUS_LOG_BACKUPS",
    "resync_interval": "STRATUS_RESYNC_INTERVAL",
    "monitor_interval": "STRATUS_MONITOR_INTERVAL",
    "probe_interval": "STRATUS_PROBE_INTERVAL",
    "qps_interval": "STRATUS_QPS_INTERVAL",
    "decision_interval": "STRATUS_DECISION_INTERVAL",
    "drain_seconds": "STRATUS_DRAIN_SECONDS",
    "max_concurrent_launches": "STRATUS_MAX_CONCURRENT_LAUNCHES",
    "retry_backoff_seconds": "STRATUS_RETRY_BACKOFF_SECONDS",
    "spot_policy": "STRATUS_SPOT_POLICY",
    "probe_failure_threshold": "STRATUS_PROBE_FAILURE_THRESHOLD",
    "qps_window": "STRATUS_QPS_WINDOW",
    "hold_queue": "STRATUS_HOLD_QUEUE",
    "hold_seconds": "STRATUS_HOLD_SECONDS",
    "router_host": "STRATUS_ROUTER_HOST",
    "router_id": "STRATUS_ROUTER_ID",
    "router_advertise": "STRATUS_ROUTER_ADVERTISE",
    "router_max_url_bytes": "STRATUS_ROUTER_MAX_URL_BYTES",
    "router_max_headers": "STRATUS_ROUTER_MAX_HEADERS",
    "router_max_header_bytes": "STRATUS_ROUTER_MAX_HEADER_BYTES",
    "router_head_timeout": "STRATUS_ROUTER_HEAD_TIMEOUT",
    "router_body_timeout": "STRATUS_ROUTER_BODY_TIMEOUT",
    "router_idle_timeout": "STRATUS_ROUTER_IDLE_TIMEOUT",
    "router_metrics": "STRATUS_ROUTER_METRICS",
    "api_token": "STRATUS_API_TOKEN",
    "api_max_body_bytes": "STRATUS_API_MAX_BODY_BYTES",
    "api_cors_origins": "STRATUS_API_CORS_ORIGINS",
    "api_tls_certfile": "STRATUS_API_TLS_CERTFILE",
    "api_tls_keyfile": "STRATUS_API_TLS_KEYFILE",
    "cloud_address": "STRATUS_CLOUD_ADDRESS",
    "cloud_ingress_cidr": "STRATUS_CLOUD_INGRESS_CIDR",
    "cloud_log_port": "STRATUS_CLOUD_LOG_PORT",
    "bootstrap_url": "STRATUS_BOOTSTRAP_URL",
    "bootstrap_ttl": "STRATUS_BOOTSTRAP_TTL",
    "cloud_check_interval": "STRATUS_CLOUD_CHECK_INTERVAL",
    "aws_regions": "STRATUS_AWS_REGIONS",
    "snapshot_interval": "STRATUS_SNAPSHOT_INTERVAL",
    "bus_max_age": "STRATUS_BUS_MAX_AGE",
    "bus_max_bytes": "STRATUS_BUS_MAX_BYTES",
    "consumer_inactive": "STRATUS_CONSUMER_INACTIVE",
    "tracking_prune_interval": "STRATUS_TRACKING_PRUNE_INTERVAL",
    "lease_ttl": "STRATUS_LEASE_TTL",
    "lease_renew": "STRATUS_LEASE_RENEW",
    "instances": "STRATUS_INSTANCES",
    "otel_exporter_otlp_endpoint": "OTEL_EXPORTER_OTLP_ENDPOINT",
    "otel_exporter_otlp_traces_endpoint": "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "otel_traces_exporter": "OTEL_TRACES_EXPORTER",
    "otel_service_name": "OTEL_SERVICE_NAME",
    "otel_sdk_disabled": "OTEL_SDK_DISABLED",
}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# libs.placement.spot_policy.SPOT_POLICIES (not imported: runtime depends on no decision code).
SPOT_POLICIES = ("stratus", "skyserve", "round_robin")


def _home_default() -> Path:
    return Path(os.environ.get("STRATUS_HOME") or Path.home() / ".stratus")


@dataclass(frozen=True)
class Settings:
    """What a process is configured with; ``Settings.from_env()`` reads the variables above."""

    home: Path = field(default_factory=_home_default)
    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = "postgresql://postgres@127.0.0.1:5432/postgres"
    api_url: str = f"http://127.0.0.1:{DEFAULT_API_PORT}"
    bus_prefix: str = "stratus"
    log_level: str = "INFO"
    log_max_bytes: int = 10_000_000
    log_backups: int = 3
    resync_interval: float | None = None  # None: the service's own default
    monitor_interval: float = 1.0
    probe_interval: float = 1.0
    qps_interval: float = 10.0
    decision_interval: float = 20.0
    drain_seconds: float = 30.0
    max_concurrent_launches: int = 4
    retry_backoff_seconds: float = 5.0
    spot_policy: str = "stratus"
    probe_failure_threshold: float = 180.0
    qps_window: float = 60.0
    hold_queue: int = 1000
    hold_seconds: float = 120.0
    router_host: str = "127.0.0.1"
    router_id: str = ""  # empty: router-<hostname>
    router_advertise: str = ""  # empty: the bind address
    router_max_url_bytes: int = 8192
    router_max_headers: int = 100
    router_max_header_bytes: int = 65536
    router_head_timeout: float = 30.0
    router_body_timeout: float = 60.0
    router_idle_timeout: float = 75.0
    router_metrics: str = "on"  # or "off"
    api_token: str = field(default="", repr=False)  # empty: the token file
    api_max_body_bytes: int = 1_048_576
    api_cors_origins: str = ""  # comma-separated; empty: no CORS
    api_tls_certfile: str = ""
    api_tls_keyfile: str = ""
    cloud_address: str = "public"  # or "private"
    cloud_ingress_cidr: str = ""  # empty: see the docstring
    cloud_log_port: int = 8181
    bootstrap_url: str = ""  # empty: api_url + /v1/bootstrap
    bootstrap_ttl: float = 1800.0
    cloud_check_interval: float = 300.0
    aws_regions: str = ""  # empty: every enabled region
    snapshot_interval: float = 30.0
    bus_max_age: float = 604800.0
    bus_max_bytes: int = 1_073_741_824
    consumer_inactive: float = 3600.0
    tracking_prune_interval: float = 30.0
    lease_ttl: float = 5.0
    lease_renew: float = 1.0
    instances: int = 1
    otel_exporter_otlp_endpoint: str = ""  # empty: no OTLP export (tracing off)
    otel_exporter_otlp_traces_endpoint: str = ""
    otel_traces_exporter: str = ""  # empty: otlp when an endpoint is set
    otel_service_name: str = ""  # empty: stratus-<component>
    otel_sdk_disabled: str = ""  # "true": off
    # The variables of ENV_VARS that were set (the rest are defaults): the local stack starts
    # its own NATS / Postgres only when NATS_URL / DATABASE_URL are not given.
    given: frozenset[str] = frozenset()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        types = {f.name: f.type for f in dataclasses.fields(cls)}
        values: dict[str, object] = {}
        given: set[str] = set()
        for name, var in ENV_VARS.items():
            raw = env.get(var, "")
            if raw == "":
                continue
            given.add(var)
            values[name] = _parse(var, raw, str(types[name]))
        level = str(values.get("log_level", cls.log_level)).upper()
        if level not in LOG_LEVELS:
            raise SettingsError(f"{ENV_VARS['log_level']}={level!r}: not one of {', '.join(LOG_LEVELS)}")
        values["log_level"] = level
        if values.get("spot_policy", "stratus") not in SPOT_POLICIES:
            raise SettingsError(
                f"STRATUS_SPOT_POLICY={values['spot_policy']!r}: not one of {', '.join(SPOT_POLICIES)}"
            )
        if values.get("cloud_address", "public") not in ("public", "private"):
            raise SettingsError(f"STRATUS_CLOUD_ADDRESS={values['cloud_address']!r}: not public or private")
        if values.get("router_metrics", "on") not in ("on", "off"):
            raise SettingsError(f"STRATUS_ROUTER_METRICS={values['router_metrics']!r}: not on or off")
        home = Path(env.get("STRATUS_HOME") or Path.home() / ".stratus")
        return cls(home=home, given=frozenset(given), **values)  # type: ignore[arg-type]

    @property
    def bootstrap_endpoint(self) -> str:
        """Where a cloud VM redeems its bootstrap token."""
        return self.bootstrap_url or self.api_url.rstrip("/") + "/v1/bootstrap"

    def resync_every(self, default: float) -> float:
        """``STRATUS_RESYNC_INTERVAL`` if set, else the calling service's ``default``."""
        return self.resync_interval if self.resync_interval is not None else default

    # Where things live under STRATUS_HOME.
    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    def component_log(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"

    @property
    def provisioner_dir(self) -> Path:
        return self.home / "provisioner"

    @property
    def local_zone_trace(self) -> Path:
        """Simulated spot zones of the local provider, when this file exists (docs/settings.md)."""
        return self.home / "local-zones.json"

    def replica_log(self, service: str, replica_id: int) -> Path:
        """The local provider keeps each replica's setup+run output here, after it ends too."""
        return self.provisioner_dir / "logs" / service / f"replica-{replica_id}.log"


def _parse(var: str, raw: str, kind: str) -> object:
    """``raw`` as the field's type (the annotation's text: ``from __future__ import annotations``)."""
    if kind == "str":
        return raw
    number = int if kind == "int" else float
    try:
        value = number(raw)
    except ValueError:
        what = "an integer" if number is int else "a number"
        raise SettingsError(f"{var}={raw!r}: not {what}") from None
    if value <= 0:
        raise SettingsError(f"{var}={raw!r}: must be greater than 0")
    return value
