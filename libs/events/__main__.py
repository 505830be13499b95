"""``python -m libs.events relay [options]``: run the outbox relay as a process.

    python -m libs.events relay --database-url postgresql://... --nats-url nats://...
    python -m libs.events relay --republish-from 1200      # publish again, then exit

SIGTERM/SIGINT stop it cleanly (the offset only ever covers acked publishes).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from libs.runtime.settings import Settings
from libs.telemetry.health import HealthEndpoint
from libs.telemetry.serve import serve_metrics
from libs.telemetry.tracing import setup_tracing

from .bus import BusConfig
from .lifecycle import install_stop_signals
from .relay import RelayOptions, serve


def relay_main(argv: Sequence[str]) -> int:
    settings = Settings.from_env()
    p = argparse.ArgumentParser(prog="python -m libs.events relay", description="The outbox relay.")
    given = "DATABASE_URL" in settings.given
    p.add_argument("--database-url", default=settings.database_url if given else None)
    p.add_argument("--nats-url", default=settings.nats_url)
    p.add_argument("--name", default="default", help="relay name: one active relay per name")
    p.add_argument("--stream", default=BusConfig().stream)
    p.add_argument("--prefix", default=BusConfig().prefix)
    p.add_argument("--batch-size", type=int, default=RelayOptions().batch_size)
    p.add_argument("--poll-interval", type=float, default=RelayOptions().poll_interval)
    p.add_argument("--republish-from", type=int, help="publish again from this position, then exit")
    p.add_argument("--republish-to", type=int, help="last position to republish (default: the offset)")
    args = p.parse_args(argv)
    if not args.database_url:
        p.error("--database-url or DATABASE_URL is required")
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    setup_tracing("relay", settings)  # its publish spans: OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set
    bus = BusConfig(
        stream=args.stream, prefix=args.prefix, max_age=settings.bus_max_age, max_bytes=settings.bus_max_bytes
    )
    options = RelayOptions(
        name=args.name, batch_size=args.batch_size, poll_interval=args.poll_interval,
        lease_ttl=settings.lease_ttl, standby_interval=settings.lease_renew,
    )  # fmt: skip

    health = HealthEndpoint("relay")  # /healthz on the metrics server, once the relay is connected

    async def run() -> int:
        stop = asyncio.Event()
        remove = install_stop_signals(stop)
        try:
            return await serve(
                args.database_url, args.nats_url, bus=bus, options=options, stop=stop,
                republish_from=args.republish_from, republish_to=args.republish_to, health=health,
            )  # fmt: skip
        finally:
            remove()

    if args.republish_from is not None:
        return asyncio.run(run())
    url, stop_metrics = serve_metrics("relay", settings.home, health)  # `stratus local status` lists it
    logging.getLogger("libs.events.relay").info("relay %s: metrics at %s", args.name, url)
    try:
        return asyncio.run(run())
    finally:
        stop_metrics()


COMMANDS = {"relay": relay_main}


def main(argv: Sequence[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m libs.events {{{','.join(COMMANDS)}}} [options]", file=sys.stderr)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
