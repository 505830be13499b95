"""Releasing a service's security group once no instance of it is left in the region.

Only groups Stratus made for the service are deleted: named ``stratus-<service>`` *and* tagged
``stratus:service=<service>`` (``aws_network.ensure_group`` sets both), so a group a user
created by hand, or another service's, is never touched. EC2 refuses to delete a group that an
instance still uses (``DependencyViolation``), and a terminated instance keeps using it while it
is ``shutting-down``: ``release_step`` says "wait" then, and ``release_groups`` polls, bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from .aws_errors import BOTO_ERRORS, error_code
from .aws_network import group_name
from .aws_requests import LIVE_STATES, TAG_SERVICE
from .errors import TransientError

log = logging.getLogger("stratus.provisioner.aws")
Step = Literal["in-use", "wait", "done"]
RELEASE_WAIT_SECONDS = 300.0  # EC2 takes a minute or two to finish terminating an instance


def service_groups(ec2: Any, service: str) -> list[dict[str, Any]]:
    """The region's security groups Stratus created for ``service`` (name and tag both match)."""
    filters = [
        {"Name": "group-name", "Values": [group_name(service)]},
        {"Name": f"tag:{TAG_SERVICE}", "Values": [service]},
    ]
    groups = ec2.describe_security_groups(Filters=filters).get("SecurityGroups") or []
    return [g for g in groups if {"Key": TAG_SERVICE, "Value": service} in (g.get("Tags") or [])]


def instance_states(ec2: Any, group_ids: list[str]) -> list[str]:
    """The states of instances not yet terminated that are in any of ``group_ids``."""
    filters = [
        {"Name": "instance.group-id", "Values": group_ids},
        {"Name": "instance-state-name", "Values": [*LIVE_STATES, "shutting-down"]},
    ]
    found = ec2.describe_instances(Filters=filters)
    return [
        str(i.get("State", {}).get("Name", ""))
        for r in found.get("Reservations") or []
        for i in r.get("Instances") or []
    ]


def release_step(ec2: Any, service: str) -> Step:
    """One attempt (blocking): delete the service's groups unless an instance still uses them."""
    groups = service_groups(ec2, service)
    if not groups:
        return "done"
    states = instance_states(ec2, [str(g["GroupId"]) for g in groups])
    if any(state != "shutting-down" for state in states):
        return "in-use"
    if states:
        return "wait"
    for group in groups:
        try:
            ec2.delete_security_group(GroupId=str(group["GroupId"]))
        except BOTO_ERRORS as exc:
            code = error_code(exc)
            if code == "InvalidGroup.NotFound":
                continue  # deleted meanwhile: what we wanted
            if code == "DependencyViolation":
                return "wait"  # an instance (or another group's rule) still refers to it
            raise
        log.info("deleted security group %s (%s) of %s", group["GroupId"], group_name(service), service)
    return "done"


async def release_groups(
    call: Callable[[str, Callable[[], Step]], Awaitable[Step]],
    ec2: Any,
    service: str,
    region: str,
    *,
    wait_seconds: float = RELEASE_WAIT_SECONDS,
) -> Step:
    """Repeat ``release_step`` while instances are shutting down, for at most ``wait_seconds``.

    ``call`` runs a blocking function in a thread and translates boto errors (the provider's
    ``_call``). "in-use": a live instance still uses a group, nothing deleted. TransientError when
    the groups are still held after ``wait_seconds``."""
    doing = f"release the security group of {service!r} in {region}"
    deadline = time.monotonic() + wait_seconds
    delay = 1.0
    while True:
        step = await call(doing, lambda: release_step(ec2, service))
        if step != "wait":
            return step
        if time.monotonic() + delay > deadline:
            raise TransientError(f"{doing}: instances still hold it after {wait_seconds:g} s")
        await asyncio.sleep(delay)  # polling EC2: it sends no event when an instance is gone
        delay = min(delay * 2, 15.0)
