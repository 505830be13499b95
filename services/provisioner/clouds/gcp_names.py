"""Names, labels and ids of Stratus' GCP resources (pure).

GCP resource names and network tags match ``[a-z]([-a-z0-9]*[a-z0-9])?`` (at most 63 chars);
label keys and values are lowercase ``[a-z0-9_-]`` (values may be empty, at most 63 chars).
A service name is sanitized into both; the exact name also travels in the public metadata
key ``stratus-service`` so a lossy sanitization never merges two services on rediscovery.

An instance id is ``<zone>/<name>``: the zone is needed by every per-instance REST call.

The nodes of a multi-node replica are named ``<base>-n<rank>of<count>`` (``node_names``), the
head's name ending in ``-n0of<count>``: from the head's id alone ``status`` and ``terminate``
know every node, even once some of them (the head included) are gone. A single node's name
ends in its random hex suffix, which never reads ``n<digits>of<digits>``.
"""

from __future__ import annotations

import re
import secrets

from .errors import InstanceNotFound

LABEL_SERVICE = "stratus-service"
LABEL_REPLICA = "stratus-replica-id"
LABEL_VERSION = "stratus-version"
LABEL_NODE_RANK = "stratus-node-rank"  # multi-node replicas only
LABEL_HEAD = "stratus-head"  # multi-node replicas only: the head's name, on every node
METADATA_SERVICE = "stratus-service"
METADATA_PORT = "stratus-service-port"
MAX_NAME = 63

_NOT_LABEL = re.compile(r"[^a-z0-9_-]+")
_NOT_NAME = re.compile(r"[^a-z0-9-]+")
_ZONE = re.compile(r"[a-z]+-[a-z]+[0-9]+-[a-z]\Z")
_NAME = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?\Z")
_NODE = re.compile(r"-n([0-9]+)of([0-9]+)\Z")


def label_value(text: str) -> str:
    """``text`` as a GCP label value: lowercased, other characters as '-', at most 63 chars."""
    return _NOT_LABEL.sub("-", text.lower())[:MAX_NAME]


def _name_part(text: str, limit: int) -> str:
    part = _NOT_NAME.sub("-", text.lower()).strip("-")[:limit].rstrip("-")
    return part or "x"


def service_tag(service: str) -> str:
    """The network tag every instance of ``service`` carries (its firewall rule's target)."""
    return f"stratus-{_name_part(service, MAX_NAME - len('stratus-'))}"


def firewall_name(service: str) -> str:
    """The firewall rule opening ``service``'s ports (one rule per service)."""
    return f"{service_tag(service)[: MAX_NAME - 3]}-in"


def nodes_firewall_name(service: str) -> str:
    """The firewall rule letting the nodes of ``service``'s multi-node replicas reach each other."""
    return f"{service_tag(service)[: MAX_NAME - 6]}-nodes"


def instance_name(service: str, replica_id: int, suffix: str | None = None, *, reserve: int = 0) -> str:
    """A fresh instance name: a random suffix keeps a relaunch apart from a dying predecessor.
    ``reserve``: characters left free for a node suffix."""
    tail = f"-{replica_id}-{suffix or secrets.token_hex(3)}"
    return f"stratus-{_name_part(service, MAX_NAME - len('stratus-') - len(tail) - reserve)}{tail}"


def _node_suffix(rank: int, count: int) -> str:
    return f"-n{rank}of{count}"


def node_names(service: str, replica_id: int, count: int, suffix: str | None = None) -> list[str]:
    """The instance names of a replica's nodes, the head first (one node: the plain name)."""
    if count <= 1:
        return [instance_name(service, replica_id, suffix)]
    base = instance_name(service, replica_id, suffix, reserve=len(_node_suffix(count - 1, count)))
    return [base + _node_suffix(rank, count) for rank in range(count)]


def nodes_of(name: str) -> list[str]:
    """Every node's name of the replica whose head is ``name``, the head first (``[name]`` for a
    single-node replica, or for a name that is not a head's)."""
    m = _NODE.search(name)
    if m is None or m[1] != "0" or int(m[2]) < 2:
        return [name]
    base, count = name[: m.start()], int(m[2])
    return [base + _node_suffix(rank, count) for rank in range(count)]


def labels(
    service: str, replica_id: int, version: int, *, rank: int = 0, head: str | None = None
) -> dict[str, str]:
    """The Stratus labels; ``head`` (the head's name) marks a node of a multi-node replica."""
    out = {
        LABEL_SERVICE: label_value(service),
        LABEL_REPLICA: str(replica_id),
        LABEL_VERSION: str(version),
    }
    if head is not None:
        out[LABEL_NODE_RANK] = str(rank)
        out[LABEL_HEAD] = label_value(head)
    return out


def service_filter(service: str | None) -> str:
    """The list filter selecting Stratus' instances (of one service when given)."""
    if service is None:
        return f"labels.{LABEL_SERVICE}:*"
    return f'labels.{LABEL_SERVICE} = "{label_value(service)}"'


def instance_id(zone: str, name: str) -> str:
    return f"{zone}/{name}"


def parse_instance_id(value: str) -> tuple[str, str]:
    """(zone, name) of an instance id; InstanceNotFound names what is malformed."""
    zone, sep, name = value.partition("/")
    if not sep or not _ZONE.match(zone) or not _NAME.match(name):
        raise InstanceNotFound(value, "not a GCP instance id (expected <zone>/<instance name>)")
    return zone, name


def region_of(zone: str) -> str:
    """'us-central1' for 'us-central1-a'."""
    return zone.rsplit("-", 1)[0]


def last_segment(url: str) -> str:
    """'us-central1-a' for '.../zones/us-central1-a' (GCP answers with resource URLs)."""
    return url.rstrip("/").rsplit("/", 1)[-1]
