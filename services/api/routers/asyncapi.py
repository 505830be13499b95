"""``/v1/asyncapi``: the public event contract (AsyncAPI 3.0, generated from the event types)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from libs.events.asyncapi import document, render

YAML = "application/yaml"


def build() -> APIRouter:
    router = APIRouter(tags=["events"])
    json_doc = document()
    yaml_doc = render()

    @router.get(
        "/v1/asyncapi",
        summary="The event contract: JetStream subjects, every event's schema, versioning, delivery",
        responses={200: {"content": {YAML: {"schema": {"type": "string"}}}}},
        response_model=None,
    )
    async def asyncapi(
        format: Annotated[Literal["json", "yaml"], Query(description="json (default) or yaml.")] = "json",
    ) -> dict[str, Any] | PlainTextResponse:
        if format == "yaml":
            return PlainTextResponse(yaml_doc, media_type=YAML)
        return json_doc

    return router
