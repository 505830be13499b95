"""The per-service firewall rule: the service's ports open to the router's range only.

One INGRESS rule per service, targeting the service's network tag, allowing TCP on the service
port, the log port and the ports the task asks for, from ``GcpConfig.ingress_ranges()``. Nothing
else is opened (the default network's own rules, such as SSH, are the project's business).
The rule only grows while the service lives: a new version's ports are added to the ones
already allowed, so a rolling update never cuts off the old version's replicas. Once the
service is down and no VM carries its tag, ``release_rule`` deletes the rule, and only a rule
Stratus wrote for that service (its description and target tag; GCP rules have no labels).

A service with multi-node replicas gets a second rule (``ensure_nodes_rule``): every protocol
and port from the service's tag to the same tag, so a replica's nodes reach each other on their
private addresses (the nodes of two replicas of one service can too: one tag per service).
``release_rule`` deletes it with the first.
"""

from __future__ import annotations

import logging

from google.api_core import exceptions as gexc
from google.cloud import compute_v1

from . import gcp_names
from .base import LaunchTask
from .gcp_config import GcpConfig
from .gcp_errors import translate
from .gcp_operations import wait_global

log = logging.getLogger("stratus.provisioner.gcp")
DESCRIPTION = "Stratus: inbound ports of service {service}"
NODES_DESCRIPTION = "Stratus: traffic between the nodes of service {service}"


def wanted_ports(task: LaunchTask, config: GcpConfig) -> list[int]:
    return sorted({task.service_port, config.log_port, *task.ports})


def _allowed_ports(rule: compute_v1.Firewall) -> set[int]:
    ports: set[int] = set()
    for allowed in rule.allowed:
        if allowed.I_p_protocol != "tcp":
            continue
        for item in allowed.ports:
            low, _, high = item.partition("-")
            ports.update(range(int(low), int(high or low) + 1))
    return ports


def build_rule(service: str, ports: list[int], config: GcpConfig) -> compute_v1.Firewall:
    return compute_v1.Firewall(
        name=gcp_names.firewall_name(service),
        description=DESCRIPTION.format(service=service),
        network=config.network,
        direction="INGRESS",
        priority=1000,
        source_ranges=list(config.ingress_ranges()),
        target_tags=[gcp_names.service_tag(service)],
        allowed=[compute_v1.Allowed(I_p_protocol="tcp", ports=[str(p) for p in ports])],
    )


def merged(existing: compute_v1.Firewall, wanted: compute_v1.Firewall) -> compute_v1.Firewall | None:
    """The rule to write so ``existing`` covers ``wanted`` (None: it already does)."""
    ports = _allowed_ports(existing) | _allowed_ports(wanted)
    if ports == _allowed_ports(existing) and sorted(existing.source_ranges) == sorted(wanted.source_ranges):
        return None
    result = compute_v1.Firewall(wanted)
    result.allowed = [compute_v1.Allowed(I_p_protocol="tcp", ports=[str(p) for p in sorted(ports)])]
    return result


def ensure_rule(
    firewalls: compute_v1.FirewallsClient,
    operations: compute_v1.GlobalOperationsClient,
    project: str,
    task: LaunchTask,
    config: GcpConfig,
    *,
    attempts: int = 3,
) -> compute_v1.Firewall:
    """Create or widen the service's rule (blocking); the rule as it now stands."""
    wanted = build_rule(task.service, wanted_ports(task, config), config)
    doing = f"firewall rule {wanted.name}"
    try:
        try:
            existing = firewalls.get(project=project, firewall=wanted.name, timeout=30)
        except gexc.NotFound:
            try:
                op = firewalls.insert_unary(project=project, firewall_resource=wanted, timeout=30)
            except gexc.Conflict:  # created meanwhile by a concurrent launch: read it again
                if attempts <= 1:
                    raise
                return ensure_rule(firewalls, operations, project, task, config, attempts=attempts - 1)
            wait_global(operations, project, op, timeout_s=120, doing=f"insert {doing}")
            return wanted
        update = merged(existing, wanted)
        if update is None:
            return existing
        op = firewalls.patch_unary(
            project=project, firewall=wanted.name, firewall_resource=update, timeout=30
        )
        wait_global(operations, project, op, timeout_s=120, doing=f"patch {doing}")
        return update
    except gexc.GoogleAPICallError as exc:
        raise translate(exc, doing) from exc


def build_nodes_rule(service: str, config: GcpConfig) -> compute_v1.Firewall:
    tag = gcp_names.service_tag(service)
    return compute_v1.Firewall(
        name=gcp_names.nodes_firewall_name(service),
        description=NODES_DESCRIPTION.format(service=service),
        network=config.network,
        direction="INGRESS",
        priority=1000,
        source_tags=[tag],
        target_tags=[tag],
        allowed=[compute_v1.Allowed(I_p_protocol=p) for p in ("tcp", "udp", "icmp")],
    )


def ensure_nodes_rule(
    firewalls: compute_v1.FirewallsClient,
    operations: compute_v1.GlobalOperationsClient,
    project: str,
    service: str,
    config: GcpConfig,
) -> None:
    """Create the rule between the service's nodes unless it exists (blocking)."""
    wanted = build_nodes_rule(service, config)
    doing = f"firewall rule {wanted.name}"
    try:
        try:
            firewalls.get(project=project, firewall=wanted.name, timeout=30)
            return
        except gexc.NotFound:
            pass
        try:
            op = firewalls.insert_unary(project=project, firewall_resource=wanted, timeout=30)
        except gexc.Conflict:  # created meanwhile by a concurrent launch
            return
        wait_global(operations, project, op, timeout_s=120, doing=f"insert {doing}")
    except gexc.GoogleAPICallError as exc:
        raise translate(exc, doing) from exc


def is_stratus_rule(rule: compute_v1.Firewall, service: str) -> bool:
    """Whether ``rule`` is one ``build_rule`` or ``build_nodes_rule`` wrote for ``service``."""
    described = rule.description in (
        DESCRIPTION.format(service=service),
        NODES_DESCRIPTION.format(service=service),
    )
    return described and list(rule.target_tags) == [gcp_names.service_tag(service)]


def tag_in_use(instances: compute_v1.InstancesClient, project: str, tag: str) -> bool:
    """Whether any Stratus VM of the project still carries network tag ``tag``."""
    request = compute_v1.AggregatedListInstancesRequest(
        project=project, filter=gcp_names.service_filter(None)
    )
    for _zone, scoped in instances.aggregated_list(request=request, timeout=60):
        if any(tag in inst.tags.items for inst in scoped.instances):
            return True
    return False


def release_rule(
    firewalls: compute_v1.FirewallsClient,
    operations: compute_v1.GlobalOperationsClient,
    instances: compute_v1.InstancesClient,
    project: str,
    service: str,
) -> bool:
    """Delete ``service``'s rules (its ports', and its nodes' when there is one) once no VM has
    its tag (blocking); whether both are gone now."""
    gone = True
    in_use: list[bool] = []  # asked once, when a rule of ours is found
    for name in (gcp_names.firewall_name(service), gcp_names.nodes_firewall_name(service)):
        doing = f"release firewall rule {name}"
        try:
            gone &= _release_one(firewalls, operations, instances, project, service, name, in_use)
        except gexc.GoogleAPICallError as exc:
            raise translate(exc, doing) from exc
    return gone


def _release_one(
    firewalls: compute_v1.FirewallsClient,
    operations: compute_v1.GlobalOperationsClient,
    instances: compute_v1.InstancesClient,
    project: str,
    service: str,
    name: str,
    in_use: list[bool],
) -> bool:
    try:
        rule = firewalls.get(project=project, firewall=name, timeout=30)
    except gexc.NotFound:
        return True
    if not is_stratus_rule(rule, service):
        log.info("firewall rule %s is not one Stratus wrote for %s: left alone", name, service)
        return False
    if not in_use:
        in_use.append(tag_in_use(instances, project, gcp_names.service_tag(service)))
    if in_use[0]:
        return False
    try:
        op = firewalls.delete_unary(project=project, firewall=name, timeout=30)
    except gexc.NotFound:
        return True
    wait_global(operations, project, op, timeout_s=120, doing=f"release firewall rule {name}")
    log.info("deleted firewall rule %s of %s", name, service)
    return True
