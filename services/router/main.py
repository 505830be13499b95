"""The router service: one endpoint per service, replica pools kept in step with events.

Every bus message about a service triggers ``sync(service)``: it reads the projected state
and makes the endpoint match it (level-triggered), so a missed or repeated message is
harmless. Ready replicas join within one bus hop; a replica asked to terminate is drained
(no new requests; in-flight ones finish). Request counts are recorded as ``QpsSampled``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Awaitable, Callable

from libs.events.consumer import ConsumerOptions
from libs.events.envelope import RecordedEvent
from libs.events.outcomes import TRANSIENT_ERRORS
from libs.events.types import (
    ALL_EVENT_TYPES,
    EndpointAssigned,
    EndpointKeysChanged,
    QpsSampled,
    ReplicaDrained,
    ScaleFromZeroRequested,
    replica_stream,
    service_stream,
)
from libs.fleet.policy import replica_capacities
from libs.fleet.state import ReplicaState, ServiceState
from libs.fleet.status import serving_replicas
from libs.runtime.host import ServiceHost, run_main
from libs.telemetry.router_stats import watch_router

from .options import EndpointOptions
from .replicas import ReplicaPool
from .router import Router
from .security import EndpointSecurity, wants_tls

log = logging.getLogger("stratus.router")

TYPES = [t.__name__ for t in ALL_EVENT_TYPES if t not in (QpsSampled, EndpointAssigned)]
FIRST_PORT = 30001
WAKE_RESEND_SECONDS = 10.0


def endpoint_port(endpoint: str | None) -> int:
    if not endpoint:
        return 0
    try:
        return int(endpoint.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        return 0


def free_port_from(host: str, start: int, taken: set[int], tries: int = 200) -> int:
    """The first port >= start that we do not use and that binds (SkyServe's 30001, 30002...)."""
    for port in range(start, start + tries):
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
        return port
    return 0


class RouterService:
    def __init__(self, host: ServiceHost, router_id: str, advertise: str) -> None:
        self.host = host
        self.router_id = router_id
        self.advertise = advertise
        self.router = Router(host.settings.router_host)
        self.metrics = host.settings.router_metrics == "on"  # STRATUS_ROUTER_METRICS
        if self.metrics:
            watch_router(self.router)  # /metrics: requests, latency, in-flight... per service
        self.window_start = time.time()
        self._woken: dict[str, float] = {}  # service -> when ScaleFromZeroRequested was last sent
        self._drains: dict[tuple[str, int], asyncio.Task[None]] = {}  # replicas being watched
        # Replicas whose ReplicaDrained this router recorded: its own projection shows it a little
        # later, and a sync in between (resync, any event of the service) must not record it again.
        self._reported: set[tuple[str, int]] = set()
        self.security = EndpointSecurity(lambda: host.store.pool, host.settings.home)
        # Shared endpoints: every router serves the port recorded in EndpointAssigned (the
        # first router to assign one wins; the others move to it) instead of re-assigning.
        self.shared = host.settings.instances > 1

    def _options(self, svc: ServiceState) -> EndpointOptions:
        # Hold requests only if a request can wake a replica (autoscaling from 0; not `replicas: 0`).
        scale_to_zero = svc.policy.autoscale.min_replicas == 0 and svc.policy.autoscale.autoscales
        return EndpointOptions(
            hold_when_empty=scale_to_zero,
            max_queue=self.host.settings.hold_queue,
            max_wait=self.host.settings.hold_seconds,
            max_url_bytes=self.host.settings.router_max_url_bytes,
            max_headers=self.host.settings.router_max_headers,
            max_header_bytes=self.host.settings.router_max_header_bytes,
            head_timeout=self.host.settings.router_head_timeout,
            body_timeout=self.host.settings.router_body_timeout,
            client_idle_timeout=self.host.settings.router_idle_timeout,
            response_timeout=svc.policy.stream_timeout_seconds,  # load_balancer.stream_timeout_seconds
            on_hold=self._on_hold,
            # Several routers on one host (STRATUS_INSTANCES > 1) share each endpoint's port.
            reuse_port=self.shared,
            metrics=self.metrics,
        )  # fmt: skip

    async def _on_hold(self, service: str) -> None:
        await self._wake(service)

    async def _wake(self, service: str) -> None:
        """Tell the autoscaler a request is held (again every WAKE_RESEND_SECONDS while held)."""
        now = time.monotonic()
        last = self._woken.get(service)
        if last is not None and now - last < WAKE_RESEND_SECONDS:
            return
        self._woken[service] = now
        await self.host.store.append(
            service_stream(service), [ScaleFromZeroRequested(service=service, router_id=self.router_id)]
        )

    async def wake_held(self) -> None:
        """The endpoint calls ``on_hold`` at most once per ``max_wait``: a service scaled to zero
        again sooner would wait for the next QPS sample. Ask at once for every service holding
        requests with nothing ready; forget the ask once a replica is ready."""
        for name in self.router.services():
            ep = self.router.endpoint(name)
            if ep.pool.has_ready():
                self._woken.pop(name, None)
            elif ep.held_count() > 0:
                await self._wake(name)

    async def handle(self, rec: RecordedEvent) -> None:
        await self.host.fleet.wait_for(rec.position, 10.0)
        async with self.host.locks(rec.event.service):
            await self.sync(rec.event.service)
            name = rec.event.service
            if isinstance(rec.event, EndpointKeysChanged) and name in self.router:
                await self.security.load_keys(name, self.router.endpoint(name))

    async def sync(self, name: str) -> None:
        svc = self.host.fleet.state.services.get(name)
        if svc is None or svc.terminated_at is not None:
            if name in self.router:
                await self.router.remove_service(name, grace=5.0)
                log.info("%s: endpoint closed", name)
            self.security.forget(name)
            self._reported = {k for k in self._reported if k[0] != name}
            return
        if not svc.versions:
            return
        policy = svc.policy.load_balancing_policy
        if name in self.router and not await self.security.refresh_tls(name, svc, self.router.endpoint(name)):
            turned = "on" if wants_tls(svc) else "off"
            log.info("%s: TLS turned %s by an update: reopening the endpoint", name, turned)
            await self.router.remove_service(name, grace=5.0)
        recorded = endpoint_port(svc.endpoint) if svc.endpoint else 0
        if self.shared and name in self.router and recorded and recorded != self.router.endpoint(name).port:
            log.info("%s: moving to the shared endpoint port %d", name, recorded)
            await self.router.remove_service(name, grace=5.0)
        if name not in self.router:
            ok, tls = await self.security.tls_context(name, svc)
            if not ok:
                return
            taken = {endpoint_port(s.endpoint) for s in self.host.fleet.state.services.values()}
            port = endpoint_port(svc.endpoint) or free_port_from(self.router.host, FIRST_PORT, taken)
            port = await self.router.add_service(name, port, policy, options=self._options(svc), tls=tls)
            await self.security.load_keys(name, self.router.endpoint(name))
            log.info("%s: endpoint on port %d%s", name, port, " (HTTPS)" if tls is not None else "")
        else:
            self.router.pool(name).set_policy(policy)
            # An update may turn scale-to-zero on or off (min_replicas 0).
            auto = svc.policy.autoscale
            self.router.endpoint(name).hold_when_empty = auto.min_replicas == 0 and auto.autoscales
            self.router.endpoint(name).response_timeout = svc.policy.stream_timeout_seconds
        accelerators = {rid: r.placement.accelerators for rid, r in svc.replicas.items()}
        self.router.pool(name).set_capacities(replica_capacities(svc.policy.autoscale, accelerators))
        ep = self.router.endpoint(name)
        endpoint = f"{self.advertise}:{ep.port}"
        if svc.endpoint != endpoint and not (self.shared and recorded):
            res = await self.host.store.append(
                service_stream(name),
                [EndpointAssigned(service=name, endpoint=endpoint, router_id=self.router_id)],
            )
            await self.host.fleet.wait_for(res.last_position, 10.0)
        pool = ep.pool
        serving = {r.replica_id: r for r in serving_replicas(svc)}
        for r in serving.values():
            pool.set_ready(r.replica_id, r.url, r.version)
        for info in pool.replicas():
            if info.replica_id in serving:
                continue
            replica = svc.replicas.get(info.replica_id)
            if replica is None or replica.terminated_at is not None:
                pool.remove(info.replica_id)
                self._reported.discard((name, info.replica_id))
            elif replica.termination is not None:
                pool.drain(info.replica_id)
                self._watch_drain(name, replica, pool)
            else:
                pool.set_not_ready(info.replica_id)

    def _watch_drain(self, name: str, replica: ReplicaState, pool: ReplicaPool) -> None:
        """Record ``ReplicaDrained`` once the draining replica's in-flight requests finished
        (before its drain deadline), so the provisioner need not wait the whole drain time."""
        key = (name, replica.replica_id)
        term = replica.termination
        if key in self._drains or key in self._reported or term is None or replica.drained_at is not None:
            return
        timeout = term.at + term.drain_seconds - time.time()
        if timeout <= 0:
            return
        task = asyncio.create_task(self._report_drained(name, replica.replica_id, pool, timeout))
        self._drains[key] = task
        task.add_done_callback(lambda _: self._drains.pop(key, None))

    async def _report_drained(self, name: str, replica_id: int, pool: ReplicaPool, timeout: float) -> None:  # noqa: ASYNC109
        t0 = time.monotonic()
        try:
            if not await pool.wait_drained(replica_id, timeout):
                log.info("%s: replica %d still busy at its drain deadline", name, replica_id)
                return
            waited = round(time.monotonic() - t0, 3)
            event = ReplicaDrained(
                service=name, replica_id=replica_id, router_id=self.router_id, waited_seconds=waited
            )
            await self.host.store.append(replica_stream(name, replica_id), [event])
            self._reported.add((name, replica_id))
            log.info("%s: replica %d drained after %.1fs", name, replica_id, waited)
        except TRANSIENT_ERRORS as exc:  # the provisioner's drain deadline still applies
            log.warning("%s: recording replica %d drained failed: %r", name, replica_id, exc)

    async def resync(self) -> None:
        names = set(self.host.fleet.state.services) | set(self.router.services())
        for name in names:
            async with self.host.locks(name):
                await self.sync(name)
                if name in self.router:  # keys too: a missed EndpointKeysChanged is caught up here
                    await self.security.load_keys(name, self.router.endpoint(name))

    async def sample(self) -> None:
        now = time.time()
        start, self.window_start = self.window_start, now
        counts = self.router.take_request_counts()
        events = []
        for name, n in counts.items():
            svc = self.host.fleet.state.services.get(name)
            if svc is None or (n == 0 and not svc.policy.autoscale.autoscales):
                continue
            held = self.router.endpoint(name).held_count()
            sample = QpsSampled(
                service=name, router_id=self.router_id, window_start=start, window_seconds=now - start,
                requests=n, queued=held,
            )  # fmt: skip
            events.append((name, sample))
        for name, ev in events:
            await self.host.store.append(service_stream(name), [ev])

    async def close_on_stop(self) -> None:
        await self.host.stop.wait()
        for task in list(self._drains.values()):
            task.cancel()
        await self.router.close(grace=2.0)


def build(host: ServiceHost) -> Callable[[], Awaitable[None]]:
    router_id = host.settings.router_id or f"router-{socket.gethostname()}"
    advertise = host.settings.router_advertise or (
        "127.0.0.1" if host.settings.router_host in ("0.0.0.0", "") else host.settings.router_host
    )
    rs = RouterService(host, router_id, advertise)
    # Every router instance sees every event: a consumer of its own, no tracking rows.
    host.memory_consumer(TYPES, rs.handle, name=router_id.replace(".", "_"),
                         options=ConsumerOptions(fetch_timeout=0.5, concurrency=8))  # fmt: skip
    host.loop(host.settings.resync_every(2.0), rs.resync, name="resync")
    host.loop(host.settings.qps_interval, rs.sample, name="qps")
    host.loop(0.25, rs.wake_held, name="wake")
    host.task(rs.close_on_stop)

    async def on_started() -> None:
        await rs.resync()

    return on_started


def main() -> None:
    run_main("router", build, fast_loop=True)


if __name__ == "__main__":
    main()
