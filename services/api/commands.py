"""The write side of the API: validate a request against the projection, append intent events.

Every command first brings the projection up to the end of the log (so it decides on what is
recorded, even when another API instance wrote it), appends with optimistic concurrency, then
waits until the projection includes its own write (so a following GET sees it).
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import uuid
from typing import Any

from libs.catalog import CatalogError
from libs.events.errors import ConcurrencyConflict, ProjectionBehind
from libs.events.types import (
    PreemptionRequested,
    ReplicaTerminationRequested,
    ServiceDownRequested,
    ServiceRequested,
    ServiceUpdateRequested,
    replica_stream,
    service_stream,
)
from libs.fleet import ALIVE_STATUSES, FleetState, ReplicaState, ServiceState, replica_status, service_status
from libs.placement import NoOffer, placement_json, placement_line, preview_in
from libs.secrets import SplitEnvs, ensure_schema, purge_service, redact_spec_dict, split_envs, store_secrets
from libs.secrets.endpoint import ensure_endpoint_schema, purge_endpoint, store_endpoint_tls, tls_pair_for
from libs.secrets.errors import EndpointTlsInvalid
from libs.spec import (
    ServiceSpec,
    SpecError,
    check_launchable,
    describe_resources,
    describe_service,
    load_spec,
    spec_to_dict,
)

from .deps import ApiDeps
from .errors import Conflict, Invalid, NotFound, Unavailable, spec_invalid
from .models import AcceptedOut, CreateServiceRequest, PlanOut, SpecSource, UpdateServiceRequest

log = logging.getLogger("stratus.api")

NAME_RE = re.compile(r"^[a-zA-Z]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$")
MAX_NAME_LENGTH = 63
FAILED_CLEANUP = "FAILED_CLEANUP"
PREEMPTABLE = frozenset({"PROVISIONING", "STARTING", "READY", "NOT_READY"})


# --------------------------------------------------------------------------- reading state


async def synced_state(deps: ApiDeps) -> FleetState:
    """The projection once it includes every event committed so far."""
    end = await deps.store.last_position()
    try:
        return await deps.projection.wait_for(end, deps.consistency_timeout)
    except ProjectionBehind as exc:
        raise Unavailable(f"the API's view of the event log is behind ({exc}); retry in a moment") from exc


async def settle(deps: ApiDeps, position: int) -> None:
    """Wait until the projection includes ``position`` (read-your-writes), best effort."""
    try:
        await deps.projection.wait_for(position, deps.consistency_timeout)
    except ProjectionBehind as exc:
        log.warning("recorded position %d but the projection lags: %s", position, exc)


def is_listed(svc: ServiceState) -> bool:
    """Terminated services drop out of listings, as in SkyServe, unless their cleanup failed."""
    return not svc.terminated or service_status(svc).status == FAILED_CLEANUP


def unknown_service(state: FleetState, name: str) -> NotFound:
    known = sorted(n for n, s in state.services.items() if is_listed(s))
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else "; `stratus status` lists the services"
    return NotFound(f"service {name!r} not found{hint}")


def find_service(state: FleetState, name: str, *, live: bool = True) -> ServiceState:
    """The service named ``name``; with ``live``, a terminated one counts as gone."""
    svc = state.services.get(name)
    if svc is None:
        raise unknown_service(state, name)
    if live and svc.terminated:
        raise NotFound(f"service {name!r} was terminated; `stratus up` creates it again")
    return svc


def find_replica(svc: ServiceState, replica_id: int) -> ReplicaState:
    rep = svc.replicas.get(replica_id)
    if rep is None:
        ids = sorted(svc.replicas)
        listed = ", ".join(str(i) for i in ids) if ids else "none right now"
        raise NotFound(
            f"service {svc.name!r} has no replica {replica_id} (its replicas: {listed}); "
            f"`stratus status {svc.name}` lists them"
        )
    return rep


# --------------------------------------------------------------------------- specs


def check_name(name: str) -> None:
    if len(name) > MAX_NAME_LENGTH or not NAME_RE.match(name):
        raise Invalid(
            f"invalid service name {name!r}: use at most {MAX_NAME_LENGTH} letters, digits, '-', '_' or '.', "
            "starting with a letter and ending with a letter or digit",
            code="invalid_name",
        )


def load_request_spec(src: SpecSource) -> ServiceSpec:
    if (src.yaml is None) == (src.spec is None):
        raise Invalid(
            "give the service spec as exactly one of 'yaml' (the YAML text) "
            "or 'spec' (the document as a JSON object)",
            code="invalid_request",
        )
    text = src.yaml if src.yaml is not None else json.dumps(src.spec)
    try:
        return load_spec(text, env_overrides=src.env, source="spec")
    except SpecError as exc:
        raise spec_invalid(exc) from exc


def check_request_launchable(spec: ServiceSpec, state: FleetState) -> None:
    """Refuse what the clouds this spec may be placed on cannot launch (libs.spec.launch)."""
    enabled = state.clouds.usable if state.clouds is not None else None  # None: not checked yet
    try:
        check_launchable(spec, enabled_clouds=enabled)
    except SpecError as exc:
        raise spec_invalid(exc) from exc


def _summary(spec: ServiceSpec, name: str, split: SplitEnvs) -> list[str]:
    lines = [describe_service(spec, name), describe_resources(spec)]
    if split.public:
        lines.append(f"envs: {', '.join(sorted(split.public))}")
    if split.secret:
        lines.append(f"secrets (stored encrypted, never in events): {', '.join(split.secret_names)}")
    return lines


async def _ensure_secrets_schema(deps: ApiDeps) -> None:
    if not deps.secrets_schema_ready:
        await ensure_schema(deps.store.pool)
        await ensure_endpoint_schema(deps.store.pool)
        deps.secrets_schema_ready = True


def _placement(deps: ApiDeps, spec_dict: dict[str, Any], state: FleetState) -> tuple[dict[str, Any], str]:
    """The first replica's placement and price (libs.placement; no cloud is called). A spec
    nothing in the catalog satisfies is refused, naming what the catalog has."""
    try:
        found = preview_in(deps.settings.home, spec_dict, state.clouds)
    except NoOffer as exc:
        raise Invalid(f"nothing in the catalog satisfies the resources: {exc}", code="no_offer") from exc
    except CatalogError as exc:
        raise Unavailable(f"the price catalog or config.yaml is unusable: {exc}") from exc
    return placement_json(found), placement_line(found)


# --------------------------------------------------------------------------- commands


def _tls_pair(spec: ServiceSpec, req: SpecSource) -> tuple[str, str] | None:
    try:
        return tls_pair_for(spec.service.tls is not None, req.tls_cert_pem, req.tls_key_pem)
    except EndpointTlsInvalid as exc:
        raise Invalid(str(exc), code="invalid_tls") from exc


async def create_service(deps: ApiDeps, req: CreateServiceRequest, *, principal: str = "") -> PlanOut:
    spec = load_request_spec(req)
    tls = _tls_pair(spec, req)
    name = req.name or spec.name or f"stratus-service-{uuid.uuid4().hex[:4]}"
    check_name(name)
    split = split_envs(spec.envs, spec.secrets, probe_headers=spec.service.headers)
    spec_dict = redact_spec_dict(spec_to_dict(spec), split)
    spec_dict["name"] = name
    state = await synced_state(deps)
    check_request_launchable(spec, state)
    existing = state.services.get(name)
    if existing is not None and not existing.terminated:
        status = service_status(existing).status
        raise Conflict(
            f"service {name!r} already exists (status {status}); choose another name with -n NAME, change it "
            f"with `stratus update {name} FILE`, or remove it with `stratus down {name}`"
        )
    placement, line = _placement(deps, spec_dict, state)
    plan = PlanOut(
        name=name, version=1, dry_run=req.dry_run, summary=[*_summary(spec, name, split), line],
        spec=spec_dict, secret_envs=split.secret_names, placement=placement,
    )  # fmt: skip
    if req.dry_run:
        return plan
    stream = service_stream(name)
    expected = 0 if existing is None else await deps.store.stream_version(stream)
    event = ServiceRequested(
        service=name, version=1, spec=spec_dict, secret_envs=split.secret_names, principal=principal
    )
    await _ensure_secrets_schema(deps)
    try:
        async with deps.store.transaction() as tx:
            await store_secrets(
                tx.conn, name, 1, split.secret, deps.settings.home, probe_headers=split.probe_headers
            )
            await purge_endpoint(tx.conn, name)  # no key or certificate of an earlier service of this name
            if tls is not None:
                await store_endpoint_tls(tx.conn, name, 1, *tls, deps.settings.home)
            result = await tx.append(stream, [event], expected_version=expected)
    except ConcurrencyConflict as exc:
        raise Conflict(
            f"service {name!r} was created by another request at the same time; choose another name"
        ) from exc
    await settle(deps, result.last_position)
    log.info("service %s requested (version 1, position %d)", name, result.last_position)
    return plan.model_copy(update={"position": result.last_position})


async def update_service(
    deps: ApiDeps, name: str, req: UpdateServiceRequest, *, principal: str = ""
) -> PlanOut:
    spec = load_request_spec(req)
    tls = _tls_pair(spec, req)
    split = split_envs(spec.envs, spec.secrets, probe_headers=spec.service.headers)
    spec_dict = redact_spec_dict(spec_to_dict(spec), split)
    spec_dict["name"] = name
    state = await synced_state(deps)
    check_request_launchable(spec, state)
    svc = find_service(state, name)
    if svc.down_requested:
        raise Conflict(
            f"service {name!r} is shutting down; it cannot be updated (`stratus up` it again once gone)"
        )
    version = max([svc.latest_version, *svc.versions]) + 1
    summary = [*_summary(spec, name, split), f"update: version {version} ({req.mode.replace('_', '-')})"]
    placement, line = _placement(deps, spec_dict, state)
    plan = PlanOut(
        name=name, version=version, dry_run=req.dry_run, summary=[*summary, line], spec=spec_dict,
        secret_envs=split.secret_names, mode=req.mode, placement=placement,
    )  # fmt: skip
    if req.dry_run:
        return plan
    stream = service_stream(name)
    expected = await deps.store.stream_version(stream)
    event = ServiceUpdateRequested(
        service=name,
        version=version,
        spec=spec_dict,
        mode=req.mode,
        secret_envs=split.secret_names,
        principal=principal,
    )
    await _ensure_secrets_schema(deps)
    try:
        async with deps.store.transaction() as tx:
            await store_secrets(
                tx.conn, name, version, split.secret, deps.settings.home, probe_headers=split.probe_headers
            )
            if tls is not None:
                await store_endpoint_tls(tx.conn, name, version, *tls, deps.settings.home)
            result = await tx.append(stream, [event], expected_version=expected)
    except ConcurrencyConflict as exc:
        raise Conflict(
            f"service {name!r} changed while this update was prepared; run the update again"
        ) from exc
    await settle(deps, result.last_position)
    log.info("service %s update requested (version %d, %s)", name, version, req.mode)
    return plan.model_copy(update={"position": result.last_position})


async def request_down(deps: ApiDeps, name: str, purge: bool, *, principal: str = "") -> AcceptedOut:
    state = await synced_state(deps)
    svc = find_service(state, name, live=False)
    status = service_status(svc).status
    if svc.terminated and status != FAILED_CLEANUP:
        raise NotFound(f"service {name!r} was already terminated")
    if status == FAILED_CLEANUP and not purge:
        raise Conflict(
            f"service {name!r} is {FAILED_CLEANUP} ({service_status(svc).reason}); "
            f"`stratus down {name} --purge` forgets it (check the cloud for leftovers)"
        )
    if svc.down_requested and (svc.purge or not purge):
        return AcceptedOut(
            message=f"service {name!r} is already shutting down", service=name, position=state.position
        )
    down = ServiceDownRequested(service=name, purge=purge, principal=principal)
    if purge:  # its secrets go with it, in the transaction recording the purge
        await _ensure_secrets_schema(deps)
        async with deps.store.transaction() as tx:
            await purge_service(tx.conn, name)
            await purge_endpoint(tx.conn, name)
            result = await tx.append(service_stream(name), [down])
    else:
        result = await deps.store.append(service_stream(name), [down])
    await settle(deps, result.last_position)
    log.info("service %s down requested (purge=%s)", name, purge)
    return AcceptedOut(
        message=f"service {name!r} is shutting down{' (purge)' if purge else ''}",
        service=name,
        position=result.last_position,
    )


async def terminate_replica(
    deps: ApiDeps, name: str, replica_id: int, purge: bool, *, principal: str = ""
) -> AcceptedOut:
    state = await synced_state(deps)
    svc = find_service(state, name)
    rep = find_replica(svc, replica_id)
    status = replica_status(rep)
    if rep.termination is not None and (rep.termination.purge or not purge):
        raise Conflict(
            f"replica {replica_id} of {name!r} is already {status}"
            + ("" if purge or status != FAILED_CLEANUP else "; `--purge` forgets it")
        )
    # A READY replica is drained first: no new requests, in-flight ones (streams) finish.
    drain = deps.drain_seconds if status == "READY" else 0.0
    event = ReplicaTerminationRequested(
        service=name,
        replica_id=replica_id,
        reason="requested by the user",
        drain_seconds=drain,
        purge=purge,
        principal=principal,
    )
    result = await deps.store.append(replica_stream(name, replica_id), [event])
    await settle(deps, result.last_position)
    log.info("replica %s/%d termination requested (purge=%s)", name, replica_id, purge)
    return AcceptedOut(
        message=f"replica {replica_id} of {name!r} is being terminated",
        service=name,
        position=result.last_position,
        replica_id=replica_id,
    )


async def request_preemption(
    deps: ApiDeps, name: str, replica_id: int, *, principal: str = ""
) -> AcceptedOut:
    state = await synced_state(deps)
    svc = find_service(state, name)
    rep = find_replica(svc, replica_id)
    status = replica_status(rep)
    if status not in PREEMPTABLE or rep.termination is not None:
        raise Conflict(
            f"replica {replica_id} of {name!r} is {status}; only a launched, live replica "
            f"({', '.join(sorted(PREEMPTABLE))}) can be preempted"
        )
    assert status in ALIVE_STATUSES
    result = await deps.store.append(
        replica_stream(name, replica_id),
        [PreemptionRequested(service=name, replica_id=replica_id, principal=principal)],
    )
    await settle(deps, result.last_position)
    log.info("replica %s/%d preemption requested", name, replica_id)
    return AcceptedOut(
        message=f"preemption of replica {replica_id} of {name!r} requested; the provider will report it",
        service=name,
        position=result.last_position,
        replica_id=replica_id,
    )
