"""An example integration: follow Stratus's replicas from its events, with nothing but nats-py.

It subscribes to the JetStream stream Stratus publishes its log to (see docs/events.asyncapi.yaml),
keeps the set of ready replicas per service from ``ReplicaReady`` / ``Preempted`` (and
``ReplicaNotReady`` / ``ReplicaTerminated``, which also take a replica out), and prints one JSON
line per change: what a platform would feed its own inventory, pager or cost report.

    NATS_URL=nats://127.0.0.1:4222 python examples/integration/replica_watcher.py [--service NAME]
        [--prefix stratus] [--durable NAME] [--max-events N]

Delivery is at least once, so reactions are keyed on the event id (``Stratus-Event-Id``): a
redelivered message is acked and ignored. ``--durable`` keeps the position across restarts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

WATCHED = ("ReplicaReady", "Preempted", "ReplicaNotReady", "ReplicaTerminated")


def stream_name(prefix: str) -> str:
    return "STRATUS" if prefix == "stratus" else f"STRATUS_{prefix.upper().replace('-', '_')}"


class Inventory:
    """Ready replicas per service, from the events (pure: no I/O)."""

    def __init__(self) -> None:
        self.ready: dict[str, dict[int, str]] = {}
        self.seen: set[str] = set()

    def apply(self, event_id: str, event: dict[str, Any]) -> dict[str, Any] | None:
        """The change this event makes (None: a duplicate, or nothing changed)."""
        if event_id in self.seen:
            return None
        self.seen.add(event_id)
        service, replica = event["service"], int(event["replica_id"])
        replicas = self.ready.setdefault(service, {})
        if event["type"] == "ReplicaReady":
            replicas[replica] = event.get("url", "")
            change = "ready"
        elif replica in replicas:
            del replicas[replica]
            change = "preempted" if event["type"] == "Preempted" else "gone"
        else:
            return None
        out: dict[str, Any] = {"change": change, "service": service, "replica_id": replica}
        if event["type"] == "Preempted":
            placement = event.get("placement") or {}
            out["where"] = "/".join(x for x in (placement.get("cloud"), placement.get("zone")) if x)
        out["ready"] = sorted(replicas)
        return out


async def watch(args: argparse.Namespace) -> None:
    nc = await nats.connect(os.environ.get("NATS_URL", "nats://127.0.0.1:4222"), name="replica-watcher")
    js = nc.jetstream()
    service = args.service or "*"
    stream = stream_name(args.prefix)
    # One filter subject (a nats-server before 2.10 takes no more); other types are acked unread.
    # On 2.10+, ``filter_subjects=[f"{prefix}.ev.{service}.{t}" for t in WATCHED]`` saves that.
    config = ConsumerConfig(
        durable_name=args.durable, ack_policy=AckPolicy.EXPLICIT, deliver_policy=DeliverPolicy.ALL,
        filter_subject=f"{args.prefix}.ev.{service}.*",
    )  # fmt: skip
    await js.add_consumer(stream, config)
    sub = await js.pull_subscribe_bind(durable=args.durable, stream=stream)
    inventory = Inventory()
    handled = 0
    try:
        while args.max_events is None or handled < args.max_events:
            try:
                msgs = await sub.fetch(batch=32, timeout=1.0)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                headers = msg.headers or {}
                if headers.get("Stratus-Type") not in WATCHED:
                    await msg.ack()
                    continue
                change = inventory.apply(headers.get("Stratus-Event-Id", ""), json.loads(msg.data))
                if change is not None:
                    print(json.dumps(change), flush=True)
                    handled += 1
                await msg.ack()
    finally:
        await nc.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--service", help="only this service's replicas")
    p.add_argument("--prefix", default=os.environ.get("STRATUS_BUS_PREFIX", "stratus"))
    p.add_argument("--durable", default="replica-watcher", help="the JetStream consumer's name")
    p.add_argument("--max-events", type=int, default=None, help="stop after this many changes")
    try:
        asyncio.run(watch(p.parse_args()))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
