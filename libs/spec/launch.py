"""What a valid spec may ask that Stratus cannot launch yet: refused at ``up`` and ``update``.

The parser accepts whatever SkyServe 0.14.1's accepts; a field a candidate cloud's provider
cannot honour is refused when the service is requested (``check_launchable``, called by the API
before anything is recorded or priced), naming the cloud and the field, instead of being
launched as something else.

- ``num_nodes > 1``: SkyServe launches each replica as a cluster of ``num_nodes`` nodes (the run
  command on every node with ``SKYPILOT_NODE_RANK``/``SKYPILOT_NODE_IPS``, probes and traffic to
  the head node). Every provider does (``local``: a network namespace per node; aws, gcp, azure:
  a VM per node, each learning its rank and the nodes' IPs from its bootstrap answer). A provider
  added without it would get such a spec refused here, since launching the head alone would run
  a program that waits for workers that never come. A candidate without ``cloud`` may be placed
  on any enabled cloud (``local`` when none is): each of those must launch it.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import Issue, SpecValidationError
from .model import ServiceSpec

PROVIDERS = ("local", "aws", "gcp", "azure")
# Providers with ``multi_node`` (services/provisioner/clouds; a test keeps the two in step).
MULTI_NODE_CLOUDS = ("local", "aws", "gcp", "azure")


def candidate_clouds(spec: ServiceSpec, enabled_clouds: Sequence[str] | None) -> list[str]:
    """Every cloud a replica of ``spec`` may be placed on. ``enabled_clouds``: the clouds the
    provisioner reported enabled (empty: none, so cloud-less candidates run locally; None:
    unknown, so any provider may be picked)."""
    anywhere = list(PROVIDERS) if enabled_clouds is None else [c.lower() for c in enabled_clouds] or ["local"]
    found: list[str] = []
    for candidate in spec.resources.candidates():
        for cloud in [candidate.cloud.lower()] if candidate.cloud else anywhere:
            if cloud not in found:
                found.append(cloud)
    return found


def launch_issues(spec: ServiceSpec, *, enabled_clouds: Sequence[str] | None = None) -> list[Issue]:
    issues = []
    if spec.num_nodes > 1:
        n = spec.num_nodes
        single = [c for c in candidate_clouds(spec, enabled_clouds) if c not in MULTI_NODE_CLOUDS]
        if single:
            issues.append(
                Issue(
                    "num_nodes",
                    f"is {n}: a valid SkyServe field (each replica a cluster of {n} nodes, traffic to its "
                    f"head), but the Stratus provider of {', '.join(single)} (where this spec may be "
                    f"placed) launches a replica on one node only; only {', '.join(MULTI_NODE_CLOUDS)} "
                    "launches several: pin `resources.cloud` to it, or set num_nodes: 1",
                )
            )
    return issues


def check_launchable(
    spec: ServiceSpec, *, enabled_clouds: Sequence[str] | None = None, source: str = "spec"
) -> ServiceSpec:
    """``spec`` itself, or a ``SpecValidationError`` naming each field a candidate cloud's
    provider cannot honour (``enabled_clouds``: see ``candidate_clouds``)."""
    issues = launch_issues(spec, enabled_clouds=enabled_clouds)
    if issues:
        raise SpecValidationError(issues, source=source)
    return spec
