"""The environment a local replica runs with (pure).

A replica gets a small part of the provisioner's environment (enough to find programs and
behave like a login: PATH, HOME, locale, proxies, CUDA settings), never the rest: the
provisioner's own settings (DATABASE_URL, cloud credentials) are not the replica's business.
"""

from __future__ import annotations

from collections.abc import Mapping

from .base import LaunchTask

INHERITED_NAMES = frozenset(
    {
        "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ", "TMPDIR",
        "LD_LIBRARY_PATH", "CUDA_HOME", "CUDA_VISIBLE_DEVICES",
        "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy",
        "SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE",
    }
)  # fmt: skip

# The variable the provider finds a replica's processes by, even those that left its
# process group and were re-parented (they keep their environment).
INSTANCE_MARKER = "STRATUS_INSTANCE_ID"


def inherited_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in environ.items() if k in INHERITED_NAMES or k.startswith("LC_")}


def platform_env(
    task: LaunchTask, *, instance_id: str, node_ip: str, rank: int = 0, node_ips: list[str] | None = None
) -> dict[str, str]:
    """What SkyPilot sets on each node of a replica (so its YAMLs run unchanged) and our names.
    ``node_ips``: every node's address, head (rank 0) first; one node (``node_ip``) by default.
    SkyPilot joins them with newlines and counts them in ``SKYPILOT_NUM_NODES``."""
    gpus = str(task.num_gpus)
    replica = str(task.replica_id)
    ips = node_ips if node_ips is not None else [node_ip]
    return {
        "SKYPILOT_NUM_GPUS_PER_NODE": gpus,
        "SKYPILOT_SERVE_REPLICA_ID": replica,
        "SKYPILOT_NODE_RANK": str(rank),
        "SKYPILOT_NUM_NODES": str(len(ips)),
        "SKYPILOT_NODE_IPS": "\n".join(ips),
        "STRATUS_NUM_GPUS_PER_NODE": gpus,
        "STRATUS_REPLICA_ID": replica,
        "STRATUS_SERVICE_NAME": task.service,
        "STRATUS_SERVICE_VERSION": str(task.version),
        INSTANCE_MARKER: instance_id,
    }


def replica_env(
    base: Mapping[str, str],
    task: LaunchTask,
    *,
    instance_id: str,
    node_ip: str,
    rank: int = 0,
    node_ips: list[str] | None = None,
) -> dict[str, str]:
    """base < task envs < platform variables: the platform's facts about the replica win, and
    the instance marker in particular must not be overridable."""
    return {
        **base,
        **task.envs,
        **platform_env(task, instance_id=instance_id, node_ip=node_ip, rank=rank, node_ips=node_ips),
    }
