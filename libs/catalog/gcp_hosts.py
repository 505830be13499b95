"""GCP prices GPUs apart from host VMs: which host types carry which GPUs, and how many.

A GCP GPU VM costs its host row plus the GPU row of the same zone. Accelerator-optimized
families have their GPUs built in (a fixed count per type); N1 hosts take attachable GPUs
(T4, V100, P100, P4) up to a vCPU limit per GPU count (GCP's "GPU platforms" table). The
mapping is ours, not the catalog's: a family not listed here gets no offer (B200's
``a4-highgpu-8g`` host rows are not in the snapshot, so B200 has none on GCP).
"""

from __future__ import annotations

import re

# Built-in GPUs: host type pattern -> (accelerator, count); the count is the type's suffix.
_BUILT_IN: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"^a2-highgpu-(\d+)g$"), "A100"),
    (re.compile(r"^a2-megagpu-(\d+)g$"), "A100"),
    (re.compile(r"^a2-ultragpu-(\d+)g$"), "A100-80GB"),
    (re.compile(r"^a3-highgpu-(\d+)g$"), "H100"),
    (re.compile(r"^a3-edgegpu-(\d+)g(-nolssd)?$"), "H100"),
    (re.compile(r"^a3-megagpu-(\d+)g$"), "H100-MEGA"),
    (re.compile(r"^a3-ultragpu-(\d+)g(-nolssd)?$"), "H200"),
)
# G2: L4 count by machine type (not in the name).
_G2_L4 = {
    "g2-standard-4": 1, "g2-standard-8": 1, "g2-standard-12": 1, "g2-standard-16": 1,
    "g2-standard-32": 1, "g2-standard-24": 2, "g2-standard-48": 4, "g2-standard-96": 8,
}  # fmt: skip
# N1 + attachable GPUs: (accelerator, count) -> the most vCPUs an N1 host may have.
N1_MAX_VCPUS: dict[tuple[str, int], float] = {
    ("T4", 1): 48, ("T4", 2): 48, ("T4", 4): 96,
    ("V100", 1): 12, ("V100", 2): 24, ("V100", 4): 48, ("V100", 8): 96,
    ("P100", 1): 16, ("P100", 2): 32, ("P100", 4): 96,
    ("P4", 1): 24, ("P4", 2): 48, ("P4", 4): 96,
}  # fmt: skip


def built_in_gpus(instance_type: str) -> tuple[str, int] | None:
    """(accelerator, count) of a host type whose GPUs are part of it; None otherwise."""
    if instance_type in _G2_L4:
        return "L4", _G2_L4[instance_type]
    for pattern, accelerator in _BUILT_IN:
        m = pattern.match(instance_type)
        if m:
            return accelerator, int(m.group(1))
    return None


def is_n1(instance_type: str) -> bool:
    return instance_type.startswith("n1-")


def n1_accepts(accelerator: str, count: float, host_vcpus: float | None) -> bool:
    """Whether an N1 host of ``host_vcpus`` may carry ``count`` x ``accelerator``."""
    if not float(count).is_integer():
        return False
    limit = N1_MAX_VCPUS.get((accelerator, int(count)))
    return limit is not None and host_vcpus is not None and host_vcpus <= limit
