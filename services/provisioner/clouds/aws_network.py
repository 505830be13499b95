"""A service's EC2 security group: only its ports, only from the router's range (blocking calls).

One group per service and VPC, named ``stratus-<service>``. Inbound: TCP to the service port,
the log port and any ``resources.ports`` the user asked for, each from the ingress CIDR alone;
nothing else (no SSH). Outbound stays EC2's default (all), which the VM needs for the bootstrap
call and its setup's downloads. ``wanted_rules`` / ``rule_changes`` are pure; ``ensure_group``
applies them, so a changed CIDR or port replaces the old rules instead of adding to them.

A multi-node replica's nodes talk to each other on any port (NCCL, torch.distributed, Ray...): its
launch adds one rule letting every instance in the group reach every other (all protocols, from
the group itself), which the per-port rules above never remove.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from .errors import LaunchError

Rule = tuple[int, str]  # (TCP port, CIDR)


def group_name(service: str) -> str:
    return "stratus-" + re.sub(r"[^A-Za-z0-9._-]", "-", service)[:200]


def check_cidr(cidr: str) -> str:
    try:
        return str(ipaddress.ip_network(cidr, strict=False))
    except ValueError as exc:
        raise LaunchError(f"ingress CIDR {cidr!r} (STRATUS_CLOUD_INGRESS_CIDR) is not a CIDR: {exc}") from exc


def wanted_rules(ports: Iterable[int], cidr: str) -> set[Rule]:
    return {(int(p), check_cidr(cidr)) for p in ports}


def existing_rules(group: dict[str, Any]) -> set[Rule]:
    out: set[Rule] = set()
    for perm in group.get("IpPermissions") or []:
        if perm.get("IpProtocol") != "tcp" or perm.get("FromPort") != perm.get("ToPort"):
            continue
        for rng in perm.get("IpRanges") or []:
            out.add((int(perm["FromPort"]), str(rng["CidrIp"])))
    return out


def rule_changes(have: set[Rule], want: set[Rule]) -> tuple[set[Rule], set[Rule]]:
    """(to add, to remove)."""
    return want - have, have - want


def _permissions(rules: set[Rule]) -> list[dict[str, Any]]:
    return [
        {"IpProtocol": "tcp", "FromPort": port, "ToPort": port,
         "IpRanges": [{"CidrIp": cidr, "Description": "stratus router/provisioner"}]}
        for port, cidr in sorted(rules)
    ]  # fmt: skip


def default_vpc(ec2: Any) -> dict[str, Any]:
    vpcs = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}]).get("Vpcs") or []
    if not vpcs:
        raise LaunchError("the region has no default VPC: create one (`aws ec2 create-default-vpc`)")
    vpc: dict[str, Any] = vpcs[0]
    return vpc


def has_self_rule(group: dict[str, Any], group_id: str) -> bool:
    return any(
        perm.get("IpProtocol") == "-1"
        and any(pair.get("GroupId") == group_id for pair in perm.get("UserIdGroupPairs") or [])
        for perm in group.get("IpPermissions") or []
    )


def ensure_group(ec2: Any, service: str, vpc_id: str, want: set[Rule], *, between_nodes: bool = False) -> str:
    """The group's id, created if missing, its inbound port rules made exactly ``want``; with
    ``between_nodes``, also all traffic from the group itself (a multi-node replica's nodes)."""
    name = group_name(service)
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}, {"Name": "vpc-id", "Values": [vpc_id]}]
    ).get("SecurityGroups") or []  # fmt: skip
    if groups:
        group = groups[0]
        group_id = str(group["GroupId"])
    else:
        created = ec2.create_security_group(
            GroupName=name, VpcId=vpc_id, Description=f"Stratus service {service}: service and log ports",
            TagSpecifications=[{"ResourceType": "security-group",
                                "Tags": [{"Key": "stratus:service", "Value": service}]}],
        )  # fmt: skip
        group_id, group = str(created["GroupId"]), {}
    add, remove = rule_changes(existing_rules(group), want)
    if remove:
        ec2.revoke_security_group_ingress(GroupId=group_id, IpPermissions=_permissions(remove))
    if add:
        ec2.authorize_security_group_ingress(GroupId=group_id, IpPermissions=_permissions(add))
    if between_nodes and not has_self_rule(group, group_id):
        pair = {"GroupId": group_id, "Description": "stratus: the nodes of a multi-node replica"}
        ec2.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=[{"IpProtocol": "-1", "UserIdGroupPairs": [pair]}]
        )
    return group_id
