"""The provisioner service: executes launches and terminations through a provider.

Level-triggered: a bus message only names a service; ``reconcile`` compares the projected
replicas with what the provider has done and acts (launches, terminations, and requested
preemptions: ``preemption.py``). A monitor loop watches launched instances and records exits and
preemptions. Launch and terminate are idempotent in the provider, so a
redelivered message or a restart mid-launch never starts a replica twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec

from libs import bootstrap as bootstrap_tokens
from libs.events.causation import using_cause
from libs.events.consumer import ConsumerOptions
from libs.events.envelope import RecordedEvent
from libs.events.store import Transaction
from libs.events.types import (
    Event,
    Preempted,
    PreemptionRequested,
    ReplicaLaunched,
    ReplicaLaunchFailed,
    ReplicaProcessExited,
    ReplicaScheduled,
    ReplicaTerminated,
    ReplicaTerminationRequested,
    ServiceDownRequested,
    replica_stream,
)
from libs.fleet.state import ReplicaState, ServiceState
from libs.runtime.claims import Claims, has
from libs.runtime.host import ServiceHost, run_main
from libs.runtime.workqueue import WorkQueue
from libs.secrets import load_secrets
from libs.telemetry.metrics import LAUNCHES
from libs.telemetry.tracing import provider_span
from libs.telemetry.usage import watch_usage

from .cloud_checks import refresh_clouds
from .cloud_logs import MIRROR_INTERVAL_SECONDS, LogMirror
from .clouds.base import Bootstrap, Instance, InstanceState, LaunchTask, Provider
from .clouds.errors import ProviderError, TransientError
from .clouds.local import LocalProvider
from .clouds.registry import CloudRouter, release_unused
from .logs_server import serve_logs
from .preemption import Preemptions, wants_preemption
from .tasks import launch_task

log = logging.getLogger("stratus.provisioner")

TYPES = [
    ReplicaScheduled.__name__, ReplicaTerminationRequested.__name__, PreemptionRequested.__name__,
    ServiceDownRequested.__name__,
]  # fmt: skip


def needs_launch(r: ReplicaState) -> bool:
    return (
        r.scheduled_at is not None and r.launched_at is None and r.launch_failed is None
        and r.termination is None and r.failed is None
    )  # fmt: skip


def needs_termination(r: ReplicaState) -> bool:
    return r.termination is not None and r.terminated_at is None


def is_running(r: ReplicaState) -> bool:
    """Launched and not yet known to have ended."""
    return (
        r.launched_at is not None and bool(r.instance_id) and r.exited is None and r.preempted_at is None
        and r.terminated_at is None
    )  # fmt: skip


class Provisioner:
    def __init__(self, host: ServiceHost, provider: Provider) -> None:
        self.host = host
        self.provider = provider
        self._terminating: set[tuple[str, int]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.queue = WorkQueue(self.reconcile, workers=4, cause_for=host.latest_causes.get)
        # Several provisioners may run: a replica is launched by the one whose claim appended.
        self.claims = Claims(lambda: host.store, host.instance_lease())
        self.preemptions = Preemptions(lambda: host.store, lambda: self.claims.me, provider)

    async def append(self, service: str, replica_id: int, events: list[Event]) -> None:
        """Append, then wait until our own projection shows it (so the next reconcile does)."""
        result = await self.host.store.append(replica_stream(service, replica_id), events)
        await self.host.fleet.wait_for(result.last_position, 10.0)

    async def _append_once(self, service: str, replica_id: int, event: Event) -> None:
        """Append a fact another provisioner may have observed too: once (claims.append_once)."""
        instance = getattr(event, "instance_id", None) or None
        position = await self.claims.append_once(
            service, replica_id, event, recorded=has(type(event), instance)
        )
        if position is not None:
            await self.host.fleet.wait_for(position, 10.0)

    # ------------------------------------------------------------------ message-driven

    async def handle(self, rec: RecordedEvent, tx: Transaction) -> None:
        await self.host.fleet.wait_for(rec.position, 10.0)
        if isinstance(rec.event, PreemptionRequested):
            await self._preempt(rec.event)
        self.queue.add(rec.event.service)

    async def _preempt(self, event: PreemptionRequested) -> None:
        """The message's replica at once (its errors nak or dead-letter the message); a replica
        not launched yet is preempted by a later reconcile (the projection holds the request)."""
        svc = self.host.fleet.state.services.get(event.service)
        replica = svc.replicas.get(event.replica_id) if svc else None
        if replica is None or not wants_preemption(replica):
            log.info("preempt: %s replica %s not running now", event.service, event.replica_id)
            return
        await self.preemptions.act(event.service, replica)

    async def reconcile(self, service: str) -> None:
        svc = self.host.fleet.state.services.get(service)
        if svc is None:
            return
        for r in list(svc.replicas.values()):
            if needs_termination(r):
                self._start_termination(svc, r)
            elif needs_launch(r):
                await self._launch(svc, r)
        await self.preemptions.act_on(svc)  # requested, not acted on yet (a missed message too)

    async def _launch(self, svc: ServiceState, r: ReplicaState) -> None:
        info = svc.versions.get(r.version)
        if info is None:
            return
        claim = await self.claims.claim(svc.name, r.replica_id, r.placement)
        if claim is None:
            return  # launched already, or another live provisioner is launching it
        try:
            secrets = await load_secrets(self.host.store.pool, svc.name, r.version, self.host.settings.home)
            task = launch_task(svc.name, r.replica_id, r.version, info.typed, secrets)
            task = await self._with_bootstrap(r.placement.cloud, task)
            with provider_span("launch", r.placement.cloud, svc.name, r.replica_id):
                instance = await self.provider.launch(r.placement, task)
            await self._record_node_ips(task, instance)
        except ProviderError as exc:
            log.warning("launch of %s replica %s failed: %s", svc.name, r.replica_id, exc)
            event: Event = ReplicaLaunchFailed(
                service=svc.name,
                replica_id=r.replica_id,
                kind=exc.kind,
                message=str(exc),
                placement=r.placement,
            )
        else:
            log.info("launched %s replica %s at %s", svc.name, r.replica_id, instance.url)
            event = ReplicaLaunched(
                service=svc.name, replica_id=r.replica_id, instance_id=instance.instance_id, url=instance.url,
                placement=instance.placement,
            )  # fmt: skip
        outcome = event.kind if isinstance(event, ReplicaLaunchFailed) else "launched"
        LAUNCHES.labels(r.placement.cloud or "local", outcome).inc()
        position = await self.claims.record(claim, event)
        if position is not None:
            await self.host.fleet.wait_for(position, 10.0)

    async def _with_bootstrap(self, cloud: str, task: LaunchTask) -> LaunchTask:
        """A cloud VM fetches its secrets with a one-time token: issue it just before the launch
        (one per node of a multi-node replica, each with its rank; rank 0's is ``bootstrap``)."""
        if not isinstance(self.provider, CloudRouter) or not self.provider.needs_bootstrap_for(cloud):
            return task
        s = self.host.settings
        nodes = []
        for rank in range(task.num_nodes):
            issued = await bootstrap_tokens.issue(
                self.host.store.pool, task.service, task.replica_id, task.version, s.home,
                ttl=s.bootstrap_ttl, node_rank=rank, num_nodes=task.num_nodes,
            )  # fmt: skip
            nodes.append(Bootstrap(url=s.bootstrap_endpoint, token=issued.token))
        return msgspec.structs.replace(
            task, bootstrap=nodes[0], node_bootstraps=nodes if task.num_nodes > 1 else []
        )

    async def _record_node_ips(self, task: LaunchTask, instance: Instance) -> None:
        """Every node's IP on the nodes' tokens, so each node's bootstrap answer carries them (the
        nodes wait, retrying, until then). A failure terminates the nodes: they would wait for IPs
        that never come."""
        if task.num_nodes <= 1 or not task.node_bootstraps:
            return
        ips = instance.node_ips
        try:
            if len(ips) != task.num_nodes:
                raise ValueError(f"the provider reported {len(ips)} node IPs for {task.num_nodes} nodes")
            pool, service = self.host.store.pool, task.service
            recorded = await bootstrap_tokens.set_node_ips(pool, service, task.replica_id, task.version, ips)
            if recorded < task.num_nodes:  # the launch outlived the tokens: no node could redeem its own
                raise ValueError(f"only {recorded} of the {task.num_nodes} node tokens are still valid")
        except (bootstrap_tokens.BootstrapError, ValueError) as exc:
            try:
                await self.provider.terminate(instance.instance_id, grace_seconds=0)
            except ProviderError as cleanup:
                log.warning("terminating %s after the failure: %s", instance.instance_id, cleanup)
            raise TransientError(f"cannot record the node IPs of the launched nodes: {exc}") from exc

    def _start_termination(self, svc: ServiceState, r: ReplicaState) -> None:
        key = (svc.name, r.replica_id)
        if key in self._terminating:
            return
        self._terminating.add(key)
        assert r.termination is not None
        drain = r.termination.drain_seconds if r.ready_at is not None else 0.0
        task = asyncio.create_task(
            self._terminate(svc.name, r, drain), name=f"terminate-{svc.name}-{r.replica_id}"
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _terminate(self, service: str, r: ReplicaState, drain: float) -> None:
        key = (service, r.replica_id)
        try:
            # The router stopped sending new requests when the termination was requested;
            # in-flight ones get until the drain deadline, or until it says they finished.
            remaining = (r.termination.at if r.termination else time.time()) + drain - time.time()
            if remaining > 0:
                await self._wait_drained(service, r.replica_id, min(remaining, 600))
            error = ""
            if r.instance_id:
                try:
                    with provider_span("terminate", r.placement.cloud, service, r.replica_id):
                        await self.provider.terminate(r.instance_id, grace_seconds=10)
                except ProviderError as exc:
                    error = str(exc)
            await self._append_once(service, r.replica_id, ReplicaTerminated(
                service=service, replica_id=r.replica_id, instance_id=r.instance_id, cleanup_error=error
            ))  # fmt: skip
            log.info("terminated %s replica %s", service, r.replica_id)
            # The last replica of a service going down: its security group / firewall rule too.
            await release_unused(self.provider, service, self.host.fleet.state.services.get(service), r)
        finally:
            self._terminating.discard(key)

    def _drained(self, service: str, replica_id: int) -> bool:
        svc = self.host.fleet.state.services.get(service)
        rep = svc.replicas.get(replica_id) if svc is not None else None
        return rep is None or rep.drained_at is not None or rep.terminated_at is not None

    async def _wait_drained(self, service: str, replica_id: int, timeout: float) -> None:  # noqa: ASYNC109
        """Until a router recorded ``ReplicaDrained`` (the projection shows it) or ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._drained(service, replica_id):
            left = deadline - time.monotonic()
            if left <= 0:
                return
            await asyncio.sleep(min(0.1, left))

    # ------------------------------------------------------------------ periodic

    async def resync(self) -> None:
        with using_cause(None):  # each reconcile carries its own service's latest cause
            for name in list(self.host.fleet.state.services):
                self.queue.add(name)

    async def monitor(self) -> None:
        """Record replicas whose process ended on its own, and preemptions."""
        for svc in list(self.host.fleet.state.services.values()):
            for r in list(svc.replicas.values()):
                if not is_running(r) or r.termination is not None:
                    continue
                try:
                    status = await self.provider.status(r.instance_id)
                except ProviderError as exc:  # this replica is checked again next round
                    log.warning("status of %s replica %s: %s", svc.name, r.replica_id, exc)
                    continue
                event: Event | None = None
                if status.state == InstanceState.PREEMPTED:
                    event = Preempted(service=svc.name, replica_id=r.replica_id, instance_id=r.instance_id,
                                      placement=r.placement)  # fmt: skip
                elif status.state in (
                    InstanceState.EXITED,
                    InstanceState.NOT_FOUND,
                    InstanceState.TERMINATED,
                ):
                    event = ReplicaProcessExited(
                        service=svc.name, replica_id=r.replica_id, instance_id=r.instance_id,
                        exit_code=status.exit_code,
                        reason=status.detail[:200],
                    )  # fmt: skip
                if event is not None:
                    log.info("%s replica %s: %s", svc.name, r.replica_id, status.state)
                    await self._append_once(svc.name, r.replica_id, event)

    async def close_on_stop(self) -> None:
        await self.host.stop.wait()
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)


def build(host: ServiceHost) -> Callable[[], Awaitable[None]]:
    local = LocalProvider(host.settings.provisioner_dir, zone_trace=host.settings.local_zone_trace)
    provider = CloudRouter({"local": local})  # the clouds join once their credentials check out
    prov = Provisioner(host, provider)
    watch_usage(lambda: host.fleet.state)  # /metrics: instance-hours and cost by cloud, spot/on-demand
    host.consumer(TYPES, prov.handle, options=ConsumerOptions(ack_wait=60, concurrency=4))
    host.loop(host.settings.monitor_interval, prov.monitor, name="monitor")
    host.loop(host.settings.resync_every(5.0), prov.resync, name="resync")
    host.task(lambda: prov.queue.run(host.stop))
    host.task(lambda: serve_logs(host, local))  # replica logs, over NATS request/reply

    async def check_clouds() -> None:
        await refresh_clouds(host, provider)

    host.loop(host.settings.cloud_check_interval, check_clouds, name="clouds")
    mirror = LogMirror(host)  # `stratus logs` of cloud VMs, and their workload's exit
    provider.workload_status = mirror.exit_status
    host.loop(MIRROR_INTERVAL_SECONDS, mirror.sync, name="cloud-logs")

    async def on_started() -> None:
        await prov.resync()

    host.task(prov.close_on_stop)
    return on_started


def main() -> None:
    run_main("provisioner", build)


if __name__ == "__main__":
    main()
