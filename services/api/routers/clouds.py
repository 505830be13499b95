"""``GET /v1/clouds``: which clouds the provisioner can launch on, and why not the others.

Read from the fleet projection's last ``CloudsChecked`` (the provisioner appends one at start-up
and whenever the answer changes); ``stratus check`` prints it.
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, Field

from ..deps import ApiDeps

CLOUDS = ("aws", "gcp", "azure")


class CloudOut(BaseModel):
    cloud: str
    enabled: bool
    reason: str = Field(default="", description="Why not, and what to do (empty when enabled).")


class CloudsOut(BaseModel):
    checked: bool = Field(description="False until a provisioner has checked the clouds.")
    checked_at: float | None = Field(default=None, description="Unix time of the last check.")
    allowed: list[str] = Field(description="allowed_clouds from $STRATUS_HOME/config.yaml (empty: all).")
    enabled: list[str] = Field(description="Clouds replicas can be placed on now ('local' is always).")
    clouds: list[CloudOut]


def build(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["clouds"])

    @router.get("/clouds", summary="Enabled clouds, and for each disabled one why and what to do")
    async def clouds() -> CloudsOut:
        state = deps.projection.state.clouds
        if state is None:
            never = "no provisioner has checked the clouds yet: is it running? (`stratus local status`)"
            return CloudsOut(
                checked=False, allowed=[], enabled=["local"],
                clouds=[CloudOut(cloud=c, enabled=False, reason=never) for c in CLOUDS],
            )  # fmt: skip
        usable = set(state.usable)
        out = [
            CloudOut(
                cloud=c,
                enabled=c in usable,
                reason="" if c in usable else state.disabled.get(c, "not enabled by the provisioner"),
            )
            for c in (*CLOUDS, *sorted((set(state.enabled) | set(state.disabled)) - set(CLOUDS)))
        ]
        return CloudsOut(
            checked=True, checked_at=state.checked_at, allowed=list(state.allowed),
            enabled=["local", *sorted(usable)], clouds=out,
        )  # fmt: skip

    return router
