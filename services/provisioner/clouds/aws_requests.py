"""EC2 request parameters and instance ids/tags of the AWS provider (pure).

A multi-node replica's nodes carry ``stratus:node-rank`` and ``stratus:num-nodes``; each worker
(rank > 0) also ``stratus:head``, its head's EC2 id, by which ``aws_nodes`` finds it again.
"""

from __future__ import annotations

import hashlib
from typing import Any

from libs.events.types import Placement

from .aws_images import Image
from .base import LaunchTask
from .errors import InstanceNotFound

TAG_SERVICE, TAG_REPLICA, TAG_VERSION, TAG_PORT = (
    "stratus:service",
    "stratus:replica-id",
    "stratus:version",
    "stratus:port",
)
TAG_NODE_RANK, TAG_NUM_NODES, TAG_HEAD = "stratus:node-rank", "stratus:num-nodes", "stratus:head"
LIVE_STATES = ["pending", "running", "stopping", "stopped"]
DEFAULT_DISK_GB = 256
ADDRESS_WAIT_SECONDS = 180.0


def split_instance_id(instance_id: str) -> tuple[str, str]:
    region, sep, ec2_id = instance_id.partition("/")
    if not sep or not region or not ec2_id.startswith("i-"):
        raise InstanceNotFound(instance_id, "not an AWS provider id (<region>/i-...)")
    return region, ec2_id


def client_token(placement: Placement, task: LaunchTask) -> str:
    key = f"{task.service}|{task.replica_id}|{task.version}|{placement.region}|{placement.zone}|"
    key += f"{placement.instance_type}|{placement.use_spot}"
    if task.num_nodes > 1:  # one token per node (a single node's stays what it always was)
        key += f"|node {task.node_rank} of {task.num_nodes}"
    return "stratus-" + hashlib.sha256(key.encode()).hexdigest()[:48]


def tags_of(desc: dict[str, Any]) -> dict[str, str]:
    return {str(t["Key"]): str(t["Value"]) for t in desc.get("Tags") or []}


def run_request(
    placement: Placement,
    task: LaunchTask,
    zone: str,
    image: Image,
    group_id: str,
    user_data: bytes,
    *,
    head: str = "",
) -> dict[str, Any]:
    """The RunInstances parameters for one replica, or one node of it (``task.for_node``: a
    worker's ``head`` is its head's EC2 id) (pure)."""
    name = f"stratus-{task.service}-{task.replica_id}"
    tags = [
        {"Key": "Name", "Value": f"{name}-node{task.node_rank}" if task.num_nodes > 1 else name},
        {"Key": TAG_SERVICE, "Value": task.service},
        {"Key": TAG_REPLICA, "Value": str(task.replica_id)},
        {"Key": TAG_VERSION, "Value": str(task.version)},
        {"Key": TAG_PORT, "Value": str(task.service_port)},
    ]
    if task.num_nodes > 1:
        tags.append({"Key": TAG_NODE_RANK, "Value": str(task.node_rank)})
        tags.append({"Key": TAG_NUM_NODES, "Value": str(task.num_nodes)})
    if head:
        tags.append({"Key": TAG_HEAD, "Value": head})
    req: dict[str, Any] = {
        "ImageId": image.image_id,
        "InstanceType": placement.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "SecurityGroupIds": [group_id],
        "UserData": user_data,
        "InstanceInitiatedShutdownBehavior": "terminate",
        "MetadataOptions": {"HttpTokens": "required", "HttpEndpoint": "enabled"},
        "BlockDeviceMappings": [
            {
                "DeviceName": image.root_device,
                "Ebs": {
                    "VolumeSize": placement.disk_size or task.disk_size or DEFAULT_DISK_GB,
                    "VolumeType": "gp3",
                    "DeleteOnTermination": True,
                },
            }
        ],
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
        "ClientToken": client_token(placement, task),
    }
    if zone:
        req["Placement"] = {"AvailabilityZone": zone}
    if placement.use_spot:
        req["InstanceMarketOptions"] = {
            "MarketType": "spot",
            "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
        }
    return req
