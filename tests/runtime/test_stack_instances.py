"""`stratus local up --instances N`: N of each service and of the relay, told apart."""

from __future__ import annotations

from pathlib import Path

from libs.runtime.settings import Settings
from libs.runtime.stack import SERVICES, build_components


def settings(tmp_path: Path, instances: str) -> Settings:
    return Settings.from_env({
        "STRATUS_HOME": str(tmp_path), "NATS_URL": "nats://127.0.0.1:4222",
        "DATABASE_URL": "postgresql://postgres@127.0.0.1:5432/x", "STRATUS_INSTANCES": instances,
        "STRATUS_API_URL": "http://127.0.0.1:9000", "STRATUS_ROUTER_ID": "r",
    })  # fmt: skip


def test_two_instances_of_everything_with_their_own_api_port_and_router_id(tmp_path: Path) -> None:
    components, _ = build_components(settings(tmp_path, "2"))
    names = [c.name for c in components]
    assert names == ["relay-1", "relay-2", *(f"{s}-{i}" for s in SERVICES for i in (1, 2))]
    env = {c.name: c.env for c in components}
    assert (
        "STRATUS_API_URL" not in env["api-1"] and env["api-2"]["STRATUS_API_URL"] == "http://127.0.0.1:9001"
    )
    assert (env["router-1"]["STRATUS_ROUTER_ID"], env["router-2"]["STRATUS_ROUTER_ID"]) == ("r-1", "r-2")
    assert all(env[n]["STRATUS_INSTANCES"] == "2" for n in names if not n.startswith("relay"))


def test_one_instance_keeps_the_plain_names(tmp_path: Path) -> None:
    components, _ = build_components(settings(tmp_path, "1"))
    assert [c.name for c in components] == ["relay", *SERVICES]
