"""``python -m services.api.main``: connect the store, follow the log, serve the API.

Binds the host and port of ``STRATUS_API_URL`` (default http://127.0.0.1:8765). SIGTERM/SIGINT
end open log and event streams, let in-flight requests finish, then close the store.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
from collections.abc import Sequence
from types import FrameType
from urllib.parse import urlsplit

import uvicorn

from libs.auth import bootstrap_admin, token_file
from libs.auth import ensure_schema as ensure_auth_schema
from libs.events.bus import connect as connect_bus
from libs.events.checkpoints import checkpoint_live
from libs.events.lifecycle import Backoff, retry_connect
from libs.events.projection import LiveProjection
from libs.events.store import EventStore
from libs.replica_logs import ReplicaLogClient
from libs.runtime.host import bus_config
from libs.runtime.settings import DEFAULT_API_PORT, Settings
from libs.secrets import ensure_schema, load_or_create_key
from libs.secrets.endpoint import ensure_endpoint_schema
from libs.telemetry.process import start_process_metrics
from libs.telemetry.tracing import setup_tracing

from .app import create_app
from .deps import ApiDeps, fleet_projection

log = logging.getLogger("stratus.api")

CONNECT_ATTEMPTS = 60


def bind_address(api_url: str) -> tuple[str, int]:
    parts = urlsplit(api_url)
    return parts.hostname or "127.0.0.1", parts.port or DEFAULT_API_PORT


class _Server(uvicorn.Server):
    """Tells the app's open streams to end as soon as a stop signal arrives."""

    def __init__(self, config: uvicorn.Config, deps: ApiDeps, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(config)
        self._deps = deps
        self._loop = loop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self._loop.call_soon_threadsafe(self._deps.stopping.set)
        super().handle_exit(sig, frame)
        # uvicorn re-raises captured signals after serving, which would kill the process before
        # the store is closed; a clean exit (status 0) after cleanup is what we want instead.
        self._captured_signals.clear()


async def connect_store(dsn: str) -> EventStore:
    return await retry_connect(
        lambda: EventStore.connect(dsn), what="api", attempts=CONNECT_ATTEMPTS, backoff=Backoff(0.5, 5.0)
    )


async def serve(settings: Settings) -> None:
    load_or_create_key(settings.home)
    store = await connect_store(settings.database_url)
    # Replica logs are the provisioner's: asked for over NATS request/reply.
    nc = await connect_bus(settings.nats_url, name="stratus-api", wait=None)
    try:
        await ensure_schema(store.pool)
        await ensure_endpoint_schema(store.pool)
        await bootstrap_auth(store, settings)
        projection = LiveProjection(fleet_projection(), store, snapshot_interval=settings.snapshot_interval)
        await projection.start()
        stop_metrics = start_process_metrics("api", settings.home, projection)  # /metrics
        stop_checkpoints = asyncio.Event()  # audit replay checkpoints from the live projection
        checkpoints = asyncio.create_task(
            checkpoint_live(fleet_projection(), projection, store, stop_checkpoints)
        )
        try:
            deps = ApiDeps(
                store=store, projection=projection, settings=settings, secrets_schema_ready=True,
                replica_logs=ReplicaLogClient(nc, bus_config(settings).prefix),
                drain_seconds=settings.drain_seconds,
            )  # fmt: skip
            host, port = bind_address(settings.api_url)
            tls = bool(settings.api_tls_certfile)
            config = uvicorn.Config(
                create_app(deps), host=host, port=port, log_level="info", timeout_graceful_shutdown=10,
                lifespan="off", ssl_certfile=settings.api_tls_certfile or None,
                ssl_keyfile=settings.api_tls_keyfile or None,
            )  # fmt: skip
            server = _Server(config, deps, asyncio.get_running_loop())
            log.info(
                "serving the Stratus API on %s://%s:%d (projection at position %d)",
                "https" if tls else "http",
                host,
                port,
                projection.position,
            )
            await server.serve()
        finally:
            stop_checkpoints.set()
            await checkpoints
            stop_metrics()
            await projection.stop()
    finally:
        await nc.close()
        await store.close()


async def bootstrap_auth(store: EventStore, settings: Settings) -> None:
    """The tokens table, and the first admin token (in the token file) if no live token exists."""
    path = token_file(settings.home)
    await ensure_auth_schema(store.pool)
    created = await bootstrap_admin(store.pool, path)
    if created is not None:
        log.info("created the first admin token %s#%d in %s (mode 0600)", created.name, created.id, path)


def tls_settings(settings: Settings, argv: Sequence[str] | None = None) -> Settings:
    """``--tls-certfile/--tls-keyfile`` (else STRATUS_API_TLS_*); both or neither, both readable."""
    parser = argparse.ArgumentParser(prog="python -m services.api.main", description="The Stratus API.")
    parser.add_argument("--tls-certfile", default=settings.api_tls_certfile, help="PEM certificate (chain)")
    parser.add_argument("--tls-keyfile", default=settings.api_tls_keyfile, help="PEM private key")
    args = parser.parse_args(argv)
    if bool(args.tls_certfile) != bool(args.tls_keyfile):
        parser.error("give both --tls-certfile and --tls-keyfile (or STRATUS_API_TLS_CERTFILE/_KEYFILE)")
    for flag, path in (("--tls-certfile", args.tls_certfile), ("--tls-keyfile", args.tls_keyfile)):
        if path and not os.access(path, os.R_OK):
            parser.error(f"{flag} {path}: not a readable file")
    return dataclasses.replace(settings, api_tls_certfile=args.tls_certfile, api_tls_keyfile=args.tls_keyfile)


def main(argv: Sequence[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = tls_settings(Settings.from_env(), argv)
    setup_tracing("api", settings)  # OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set; off otherwise
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings))


if __name__ == "__main__":
    main()
