"""Shared pieces of the GCP provider tests: a fake Compute API and providers pointed at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials

from libs.events.types import Placement
from services.provisioner.clouds.base import Bootstrap, LaunchTask
from services.provisioner.clouds.gcp import GcpProvider
from services.provisioner.clouds.gcp_config import GcpConfig
from tests.fakes.gcp_server import FakeCompute

PROJECT = "stratus-test"
ROUTER_RANGE = "10.20.0.0/16"
SECRET = "hf_SECRET_value_do_not_leak"


@pytest.fixture
def fake() -> Iterator[FakeCompute]:
    with FakeCompute().serving() as server:
        yield server


def make_provider(fake: FakeCompute, **config: Any) -> GcpProvider:
    settings = {"source_ranges": (ROUTER_RANGE,), "operation_timeout_s": 10.0, "address_timeout_s": 5.0}
    credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
    return GcpProvider(
        PROJECT, credentials, api_endpoint=fake.endpoint, config=GcpConfig(**{**settings, **config})
    )


def task(service: str = "llm", replica_id: int = 1, **kw: Any) -> LaunchTask:
    fields: dict[str, Any] = {
        "service": service,
        "replica_id": replica_id,
        "service_port": 8080,
        "setup": "pip install vllm",
        "run": "python -m http.server 8080",
        "envs": {"HF_TOKEN": SECRET, "MODEL_NAME": "mistral-7b"},
        "secret_names": ["HF_TOKEN"],
        "bootstrap": Bootstrap(url="https://10.20.0.5:8765/v1/bootstrap", token="boot-token-1"),
        "num_gpus": 1,
        **kw,
    }
    return LaunchTask(**fields)


def placement(zone: str = "us-central1-a", instance_type: str = "n1-standard-8", **kw: Any) -> Placement:
    fields: dict[str, Any] = {
        "region": zone.rsplit("-", 1)[0],
        "accelerators": {"T4": 1.0},
        "use_spot": True,
        "price_per_hour": 0.35,
        **kw,
    }
    return Placement(cloud="gcp", zone=zone, instance_type=instance_type, **fields)


def inserted(fake: FakeCompute) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = fake.bodies("POST", r"/zones/[^/]+/instances$")
    return bodies


def metadata(body: dict[str, Any]) -> dict[str, str]:
    return {item["key"]: item["value"] for item in body["metadata"]["items"]}


def everything_sent(fake: FakeCompute) -> str:
    return json.dumps([r.body for r in fake.requests if r.body is not None])
