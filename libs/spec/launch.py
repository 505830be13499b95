"""What a valid spec may ask that Stratus cannot launch yet: refused at ``up`` and ``update``.

The parser accepts whatever SkyServe 0.14.1's accepts; a field no Stratus provider can honour is
refused when the service is requested (``check_launchable``, called by the API before anything
is recorded or priced), naming the field, instead of being launched as something else.

- ``num_nodes > 1``: SkyServe launches each replica as a cluster of ``num_nodes`` nodes (the run
  command on every node with ``SKYPILOT_NODE_RANK``/``SKYPILOT_NODE_IPS``, probes and traffic to
  the head node). Every Stratus provider (local, aws, gcp, azure) launches a replica on one
  machine; launching the head alone would run a program that waits for workers that never come.
"""

from __future__ import annotations

from .errors import Issue, SpecValidationError
from .model import ServiceSpec

PROVIDERS = ("local", "aws", "gcp", "azure")


def launch_issues(spec: ServiceSpec) -> list[Issue]:
    issues = []
    if spec.num_nodes > 1:
        n = spec.num_nodes
        issues.append(
            Issue(
                "num_nodes",
                f"is {n}: a valid SkyServe field (each replica a cluster of {n} nodes, traffic to its "
                f"head), but no Stratus provider ({', '.join(PROVIDERS)}) launches a replica on more "
                "than one node yet; set num_nodes: 1 (or remove it) to serve each replica on one node",
            )
        )
    return issues


def check_launchable(spec: ServiceSpec, *, source: str = "spec") -> ServiceSpec:
    """``spec`` itself, or a ``SpecValidationError`` naming each field no provider can honour."""
    issues = launch_issues(spec)
    if issues:
        raise SpecValidationError(issues, source=source)
    return spec
