"""Resolving a task's image on EC2: ``image_id`` as given, else the newest default by name."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import botocore.exceptions

from .errors import LaunchError
from .images import ImageQuery


@dataclass(frozen=True)
class Image:
    image_id: str
    root_device: str  # where the root volume's size is set
    name: str


def describe_image(ec2: Any, image_id: str) -> Image:
    """One AMI by id (blocking)."""
    try:
        found = ec2.describe_images(ImageIds=[image_id]).get("Images") or []
    except botocore.exceptions.ClientError as exc:
        if not str(exc.response.get("Error", {}).get("Code", "")).startswith("InvalidAMIID"):
            raise
        found = []
    if not found:
        raise LaunchError(f"image_id {image_id!r} does not exist in this region (AMI ids are per region)")
    return _image(found[0])


def find_default_image(ec2: Any, query: ImageQuery) -> Image:
    """The newest image matching the query's first pattern that matches anything (blocking)."""
    for pattern in query.name_patterns:
        found = ec2.describe_images(
            Owners=list(query.owners),
            Filters=[{"Name": "name", "Values": [pattern]}, {"Name": "state", "Values": ["available"]}],
        ).get("Images") or []  # fmt: skip
        found = [i for i in found if i.get("Architecture", "x86_64") == "x86_64"]
        if found:
            return _image(max(found, key=lambda i: (str(i.get("CreationDate", "")), str(i["ImageId"]))))
    raise LaunchError(
        f"no {query.what} image found in this region (names {list(query.name_patterns)}); "
        "set resources.image_id to an AMI of the region"
    )


def _image(desc: dict[str, Any]) -> Image:
    return Image(
        image_id=str(desc["ImageId"]),
        root_device=str(desc.get("RootDeviceName") or "/dev/sda1"),
        name=str(desc.get("Name", "")),
    )
