"""Default machine images per cloud: a GPU-ready one when the task has accelerators (pure data).

``resources.image_id`` overrides these (``LaunchTask.image_for(region)``). AWS images are found
by name (``describe_images``, newest first) since AMI ids differ per region; the patterns are
tried in order. The GCP and Azure providers keep their own image names next to their code.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageQuery:
    owners: tuple[str, ...]
    name_patterns: tuple[str, ...]
    what: str  # for messages


# AWS Deep Learning AMIs: NVIDIA driver, CUDA, docker; Ubuntu 22.04. 898082745236 is the DLAMI owner.
AWS_GPU = ImageQuery(
    owners=("amazon", "898082745236"),
    name_patterns=(
        "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
        "Deep Learning OSS Nvidia Driver AMI GPU PyTorch * (Ubuntu 22.04) *",
        "Deep Learning AMI Ubuntu*",
    ),
    what="AWS Deep Learning AMI (Ubuntu)",
)
# Canonical's Ubuntu (099720109477): python3, bash, tar and base64 are there, as the script needs.
AWS_CPU = ImageQuery(
    owners=("099720109477",),
    name_patterns=(
        "ubuntu/images/hvm-ssd/ubuntu-jammy-22.04-amd64-server-*",
        "ubuntu/images/hvm-ssd*/ubuntu-*-amd64-server-*",
    ),
    what="Ubuntu (Canonical)",
)


def aws_default_image(num_gpus: int) -> ImageQuery:
    return AWS_GPU if num_gpus > 0 else AWS_CPU
