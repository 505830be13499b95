"""``/v1/services``: create (YAML or JSON), list, get, update (new version), delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from .. import commands
from ..auth import Caller
from ..deps import ApiDeps
from ..errors import ApiError
from ..models import (
    AcceptedOut,
    CreateServiceRequest,
    ErrorOut,
    PlanOut,
    ServiceListOut,
    ServiceOut,
    UpdateServiceRequest,
)
from ..views import service_out

MAX_BODY_BYTES = 1024 * 1024
YAML_TYPES = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "text/plain")

ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorOut, "description": "Unknown service or replica"},
    409: {"model": ErrorOut, "description": "Conflicts with the service's current state"},
    422: {"model": ErrorOut, "description": "Invalid request or spec; `issues` name each field"},
}

_CREATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "JSON (below), or the raw service YAML with Content-Type application/yaml "
        "(then ``name`` and ``dry_run`` come from the query; env overrides need the JSON form).",
        "content": {
            "application/json": {"schema": CreateServiceRequest.model_json_schema()},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "too_large"


class UnsupportedMediaType(ApiError):
    status_code = 415
    code = "unsupported_media_type"


async def _read_create_request(request: Request, name: str | None, dry_run: bool) -> CreateServiceRequest:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(
            f"the request body is {len(body)} bytes; a service spec must fit in {MAX_BODY_BYTES}"
        )
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if ctype in YAML_TYPES:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(f"the YAML body is not UTF-8 text ({exc.reason})", code="invalid_request") from exc
        return CreateServiceRequest(yaml=text, name=name, dry_run=dry_run)
    if ctype != "application/json":
        raise UnsupportedMediaType(
            f"unsupported Content-Type {ctype!r}: send application/json or application/yaml"
        )
    try:
        req = CreateServiceRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_input=False)) from exc
    # Query parameters fill what the body left out.
    updates: dict[str, Any] = {}
    if req.name is None and name is not None:
        updates["name"] = name
    if dry_run and not req.dry_run:
        updates["dry_run"] = True
    return req.model_copy(update=updates) if updates else req


def build(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1/services", tags=["services"], responses=ERRORS)

    @router.get("", summary="List services")
    async def list_services(
        name: Annotated[list[str] | None, Query(description="Only these services (repeatable).")] = None,
        all: Annotated[bool, Query(description="Include terminated services.")] = False,
    ) -> ServiceListOut:
        state = deps.projection.state
        now = deps.clock()
        wanted = set(name or [])
        services = [
            service_out(svc, now)
            for svc_name, svc in sorted(state.services.items())
            if (svc_name in wanted if wanted else (all or commands.is_listed(svc)))
        ]
        return ServiceListOut(services=services, position=state.position)

    @router.post(
        "",
        status_code=201,
        summary="Create a service from a service YAML (or its JSON form)",
        openapi_extra=_CREATE_BODY,
        responses={200: {"model": PlanOut, "description": "Dry run: the plan, nothing recorded"}},
    )
    async def create_service(
        request: Request,
        response: Response,
        caller: Caller,
        name: Annotated[str | None, Query(description="Service name (YAML body).")] = None,
        dry_run: Annotated[bool, Query(description="Validate only (YAML body).")] = False,
    ) -> PlanOut:
        req = await _read_create_request(request, name, dry_run)
        plan = await commands.create_service(deps, req, principal=caller.label)
        if plan.dry_run:
            response.status_code = 200
        return plan

    @router.get("/{name}", summary="A service with its replicas")
    async def get_service(name: str) -> ServiceOut:
        state = deps.projection.state
        svc = commands.find_service(state, name, live=False)
        return service_out(svc, deps.clock())

    @router.post(
        "/{name}/versions",
        status_code=202,
        summary="Update a service to a new spec (a new version; rolling or blue-green)",
        responses={200: {"model": PlanOut, "description": "Dry run: the plan, nothing recorded"}},
    )
    async def update_service(
        name: str, body: UpdateServiceRequest, response: Response, caller: Caller
    ) -> PlanOut:
        plan = await commands.update_service(deps, name, body, principal=caller.label)
        if plan.dry_run:
            response.status_code = 200
        return plan

    @router.delete("/{name}", status_code=202, summary="Tear a service down")
    async def delete_service(
        name: str,
        caller: Caller,
        purge: Annotated[
            bool, Query(description="Forget the service even if its cleanup failed (FAILED_CLEANUP).")
        ] = False,
    ) -> AcceptedOut:
        return await commands.request_down(deps, name, purge, principal=caller.label)

    return router
