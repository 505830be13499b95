"""Logs: a replica's setup+run output, and the components' own logs (plain text, optionally followed).

Replica logs belong to the provisioner: the API asks it over NATS (``libs.replica_logs``).
Component logs are files of the local stack (``STRATUS_HOME/logs``), read here only because
the API runs on the same machine as the stack it is part of.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path as FsPath
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import StreamingResponse

from libs.fleet import ALIVE_STATUSES, FleetState, replica_status
from libs.replica_logs import LogReply, ReplicaLogClient, ReplicaLogsError, stream_log

from .. import commands
from ..deps import ApiDeps
from ..errors import NotFound, Unavailable
from ..logfiles import COMPONENTS, SERVICE_COMPONENTS, read_log
from .services import ERRORS

Follow = Annotated[bool, Query(description="Keep streaming what is appended (until the writer ends).")]
Tail = Annotated[int | None, Query(ge=0, description="Start this many lines before the end (default: all).")]
TEXT = "text/plain; charset=utf-8"
_TEXT_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {TEXT: {"schema": {"type": "string"}}}, "description": "The log text"}
}


async def said_if_cut(body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The log; if the provisioner stops answering midway, a last line saying so (not a reset)."""
    try:
        async for chunk in body:
            yield chunk
    except ReplicaLogsError as exc:
        yield f"\n[stratus: the log stream was cut: {exc}]\n".encode()


def build(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["logs"], responses=ERRORS)

    def stream(
        path: FsPath, *, follow: bool, tail: int | None, done: Callable[[], bool]
    ) -> StreamingResponse:
        body = read_log(
            path,
            tail=tail,
            follow=follow,
            stopping=deps.stopping,
            done=done,
            poll_interval=deps.poll_interval,
        )
        return StreamingResponse(body, media_type=TEXT, headers={"Cache-Control": "no-store"})

    def replica_done(name: str, replica_id: int) -> Callable[[], bool]:
        def done() -> bool:
            svc = deps.projection.state.services.get(name)
            rep = svc.replicas.get(replica_id) if svc is not None else None
            return rep is None or replica_status(rep) not in ALIVE_STATUSES | {"SHUTTING_DOWN"}

        return done

    def log_client() -> ReplicaLogClient:
        if deps.replica_logs is None:
            raise Unavailable("replica logs are unavailable: this API has no bus connection (NATS_URL)")
        return deps.replica_logs

    async def unknown_replica(client: ReplicaLogClient, state: FleetState, name: str, rid: int) -> NotFound:
        svc = state.services[name]
        live = sorted(svc.replicas)
        ended = sorted(set(await client.replica_ids(name)) - set(live))
        listed = ", ".join(str(i) for i in live) if live else "none right now"
        if ended:
            listed += f"; terminated, logs readable: {', '.join(str(i) for i in ended)}"
        return NotFound(
            f"service {name!r} has no replica {rid} (its replicas: {listed}); "
            f"`stratus status {name}` lists the live ones"
        )

    @router.get(
        "/services/{name}/replicas/{replica_id}/logs",
        summary="A replica's setup and run output (terminated replicas' too)",
        response_class=StreamingResponse,
        responses=_TEXT_RESPONSE,
    )
    async def replica_logs(
        name: str,
        replica_id: Annotated[int, Path(ge=1)],
        follow: Follow = False,
        tail: Tail = None,
    ) -> StreamingResponse:
        # Up to date, so a replica launched a moment ago is not taken for one already gone.
        state = await commands.synced_state(deps)
        svc = commands.find_service(state, name, live=False)
        client = log_client()
        try:
            first: LogReply = await client.read(name, replica_id, tail=tail)
            if not first.found and replica_id not in svc.replicas:
                raise await unknown_replica(client, state, name, replica_id)
        except ReplicaLogsError as exc:
            raise Unavailable(str(exc)) from exc
        if not follow and not first.found:
            rep = svc.replicas[replica_id]
            why = "" if first.reason in ("", "no log yet") else f"; {first.reason}"
            raise NotFound(
                f"replica {replica_id} of {name!r} has no log yet (status {replica_status(rep)}{why}); "
                "retry with --follow to wait for it"
            )
        body = stream_log(
            client, name, replica_id, first=first, follow=follow, stopping=deps.stopping,
            done=replica_done(name, replica_id), poll_interval=deps.poll_interval,
        )  # fmt: skip
        return StreamingResponse(said_if_cut(body), media_type=TEXT, headers={"Cache-Control": "no-store"})

    @router.get(
        "/services/{name}/logs/{component}",
        summary="A service's controller (the scheduler) or load-balancer (the router) log",
        response_class=StreamingResponse,
        responses=_TEXT_RESPONSE,
    )
    async def service_component_logs(
        name: str, component: str, follow: Follow = False, tail: Tail = None
    ) -> StreamingResponse:
        commands.find_service(deps.projection.state, name, live=False)
        target = SERVICE_COMPONENTS.get(component)
        if target is None:
            raise NotFound(f"unknown service component {component!r}; use controller or load-balancer")
        return component_stream(target, follow=follow, tail=tail)

    @router.get(
        "/components/{component}/logs",
        summary="A Stratus component's log (api, scheduler, provisioner, prober, autoscaler, router, ...)",
        response_class=StreamingResponse,
        responses=_TEXT_RESPONSE,
    )
    async def component_logs(component: str, follow: Follow = False, tail: Tail = None) -> StreamingResponse:
        if component not in COMPONENTS:
            raise NotFound(f"unknown component {component!r}; components: {', '.join(COMPONENTS)}")
        return component_stream(component, follow=follow, tail=tail)

    def component_stream(component: str, *, follow: bool, tail: int | None) -> StreamingResponse:
        path = deps.settings.component_log(component)
        if not follow and not path.exists():
            raise NotFound(
                f"no log for component {component!r} at {path}; is it running here? (`stratus local status`)"
            )
        return stream(path, follow=follow, tail=tail, done=lambda: False)

    return router
