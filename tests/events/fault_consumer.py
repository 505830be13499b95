"""A consumer process for the fault tests: each source event appends one derived event.

``python -m tests.events.fault_consumer --database-url ... --nats-url ... --stream S --prefix p``.
The derived event and the tracking row commit in one transaction, so the test can count the
derived stream to check that every source event had exactly one effect.
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from libs.events.bus import BusConfig, connect_until_stopped
from libs.events.consumer import Consumer, ConsumerOptions
from libs.events.envelope import RecordedEvent
from libs.events.lifecycle import install_stop_signals
from libs.events.store import EventStore, Transaction
from libs.events.types import ServiceTerminated

DERIVED_STREAM = "derived"


async def derive(rec: RecordedEvent, tx: Transaction) -> None:
    effect = ServiceTerminated(service="derived", reason=str(rec.position))
    await tx.append(DERIVED_STREAM, [rec.caused(effect)])


async def main(args: argparse.Namespace) -> int:
    stop = asyncio.Event()
    remove = install_stop_signals(stop)
    bus = BusConfig(stream=args.stream, prefix=args.prefix)
    store = await EventStore.connect(args.database_url, min_size=1, max_size=6)
    try:
        nc = await connect_until_stopped(args.nats_url, f"fault-consumer-{args.name}", stop)
        if nc is None:
            return 0
        try:
            options = ConsumerOptions(
                filter_subjects=(bus.filter_for(service=args.source_service),),
                ack_wait=args.ack_wait, concurrency=4, fetch_batch=32, fetch_timeout=0.5,
                backoff_initial=0.1, backoff_max=1.0,
            )  # fmt: skip
            consumer = Consumer(nc, name=args.name, handler=derive, store=store, bus=bus, options=options)
            await consumer.run(stop)
            logging.info("consumer %s stopped: %s", args.name, consumer.stats)
        finally:
            await nc.close()
    finally:
        await store.close()
        remove()
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--database-url", required=True)
    p.add_argument("--nats-url", required=True)
    p.add_argument("--stream", required=True)
    p.add_argument("--prefix", required=True)
    p.add_argument("--name", default="fault-consumer")
    p.add_argument("--source-service", default="src")
    p.add_argument("--ack-wait", type=float, default=2.0)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise SystemExit(asyncio.run(main(p.parse_args())))
