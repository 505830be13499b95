"""The prober service: probes every launched replica and records what it learns.

Probe state (streaks, when failing began) lives in memory, seeded from the projection's recorded
facts on start, so a restarted prober resumes a replica's history instead of starting over.
Only transitions and failures are recorded, never routine successes; likewise only transitions
are logged at INFO, each probe at DEBUG (httpx's own per-request INFO lines are silenced).

Several instances may run: one leads (a lease, ``ServiceHost.leader``) and probes, the others
stand by and take over within STRATUS_LEASE_TTL, seeding their state from the projection.
Each replica is probed by its own task, bounded by its probe timeout: one hanging replica never
delays the others' rounds (it just skips rounds while its probe is in flight).

Probe header values are secrets: events carry ``"<redacted>"``, the prober reads the values
from the secrets store (libs.secrets) once per service version and sends them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

import msgspec

from libs.events.causation import last_cause, using_cause
from libs.events.types import replica_stream
from libs.fleet.policy import ProbePolicy
from libs.fleet.state import ReplicaState, ServiceState
from libs.runtime.host import ServiceHost, run_main
from libs.secrets import REDACTED, SecretsError, load_probe_headers
from libs.telemetry.tracing import span_from

from .decide import ProbeState, decide, probe_due
from .http_probe import HttpProber

log = logging.getLogger("stratus.prober")


def probe_target(r: ReplicaState) -> bool:
    """Launched, reachable, and not yet ended or on its way out."""
    return (
        r.launched_at is not None and bool(r.url) and r.failed is None and r.exited is None
        and r.preempted_at is None and r.termination is None and r.terminated_at is None
    )  # fmt: skip


def seed_state(svc: ServiceState, r: ReplicaState) -> ProbeState:
    assert r.launched_at is not None
    return ProbeState(
        service=svc.name, replica_id=r.replica_id, version=r.version, url=r.url, launched_at=r.launched_at,
        ready=r.is_ready, ever_ready=r.ready_at is not None, consecutive_failures=r.probe_failures,
        failing_since=r.not_ready_at,
    )  # fmt: skip


class Prober:
    def __init__(
        self, host: ServiceHost, failure_threshold: float, round_seconds: float | None = None
    ) -> None:
        self.host = host
        self.failure_threshold = failure_threshold
        # The loop's period (STRATUS_PROBE_INTERVAL): the finest probe interval there is.
        self.round_seconds = host.settings.probe_interval if round_seconds is None else round_seconds
        self.http = HttpProber()
        self.states: dict[tuple[str, int], ProbeState] = {}
        self.headers: dict[tuple[str, int], dict[str, str]] = {}  # (service, version) -> decrypted
        self.header_warnings: set[tuple[str, int]] = set()
        self.lease = host.leader("prober")
        self.inflight: dict[tuple[str, int], asyncio.Task[None]] = {}

    async def round(self) -> None:
        if not self.lease.leading:
            self.states.clear()  # a standby: the next leader seeds from the projection
            return
        targets: list[tuple[ServiceState, ReplicaState]] = [
            (svc, r)
            for svc in self.host.fleet.state.services.values()
            for r in svc.replicas.values()
            if probe_target(r)
        ]
        live = {(svc.name, r.replica_id) for svc, r in targets}
        for key in [k for k in self.states if k not in live]:
            del self.states[key]
        versions = {(svc.name, r.version) for svc, r in targets}
        for vkey in [k for k in self.headers if k not in versions]:
            del self.headers[vkey]
        now = time.time()
        for svc, r in targets:
            key = (svc.name, r.replica_id)
            due = probe_due(self._state(svc, r), self._policy(svc, r), now, self.round_seconds)
            if due and key not in self.inflight:
                task = asyncio.create_task(self._bounded(svc, r), name=f"probe-{svc.name}-{r.replica_id}")
                self.inflight[key] = task
                task.add_done_callback(self._forget)

    def _forget(self, task: asyncio.Task[None]) -> None:
        for key, t in list(self.inflight.items()):
            if t is task:
                del self.inflight[key]

    async def _bounded(self, svc: ServiceState, r: ReplicaState) -> None:
        """One replica's probe, bounded by its timeout (plus slack for recording the result);
        an error is logged here, never lost in a task nobody awaits."""
        info = svc.versions.get(r.version)
        timeout = (info.policy.probe if info is not None else ProbePolicy()).timeout_seconds + 15.0
        try:
            await asyncio.wait_for(self._probe(svc, r), timeout)
        except TimeoutError:
            log.warning("%s replica %s: probe still running after %.0fs; abandoned", svc.name,
                        r.replica_id, timeout)  # fmt: skip
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s replica %s: probe failed", svc.name, r.replica_id)

    def _state(self, svc: ServiceState, r: ReplicaState) -> ProbeState:
        return self.states.get((svc.name, r.replica_id)) or seed_state(svc, r)

    def _policy(self, svc: ServiceState, r: ReplicaState) -> ProbePolicy:
        """The probe policy decoded once, when the version was folded; the failure threshold is
        the prober's setting unless the spec wrote consecutive_failure_threshold_timeout."""
        info = svc.versions.get(r.version)
        decoded = info.policy.probe if info is not None else ProbePolicy()
        if decoded.failure_threshold_from_spec:
            return decoded
        return msgspec.structs.replace(decoded, failure_threshold_seconds=self.failure_threshold)

    async def _probe(self, svc: ServiceState, r: ReplicaState) -> None:
        key = (svc.name, r.replica_id)
        state = self._state(svc, r)
        policy = self._policy(svc, r)
        headers = await self._headers(svc.name, r.version, policy)
        result = await self.http.probe(r.url, policy, headers)
        new, events = decide(state, result, time.time(), policy)
        self.states[key] = new
        log.debug("%s replica %s: probe %s", svc.name, r.replica_id, "ok" if result.ok else result.reason)
        if events:
            stream = replica_stream(svc.name, r.replica_id)
            cause = await last_cause(self.host.store, stream)  # the verdict follows from the launch
            with using_cause(cause), span_from("probe", cause.trace if cause else None, service=svc.name):
                appended = await self.host.store.append(stream, events)
            log.info("%s replica %s: %s", svc.name, r.replica_id, ", ".join(type(e).__name__ for e in events))
            await self.host.fleet.wait_for(appended.last_position, 10.0)

    async def _headers(self, service: str, version: int, policy: ProbePolicy) -> dict[str, str]:
        """The headers to send: the spec's, with redacted values replaced by the stored ones."""
        redacted = [name for name, value in policy.headers.items() if value == REDACTED]
        if not redacted:
            return dict(policy.headers)
        cached = self.headers.get((service, version))
        if cached is None:
            try:
                stored = await load_probe_headers(
                    self.host.store.pool, service, version, self.host.settings.home
                )
            except SecretsError as exc:
                # Sent without them the probe fails, which the replica's status then shows; the
                # next round tries again (the store may be back).
                if (service, version) not in self.header_warnings:
                    self.header_warnings.add((service, version))
                    log.warning(
                        "%s version %d: probe headers %s not sent: %s", service, version, redacted, exc
                    )
                return {name: value for name, value in policy.headers.items() if value != REDACTED}
            cached = self.headers[(service, version)] = {
                name: stored[name] if value == REDACTED else value
                for name, value in policy.headers.items()
                if value != REDACTED or name in stored
            }
        return cached

    async def close_on_stop(self) -> None:
        await self.host.stop.wait()
        for task in list(self.inflight.values()):
            task.cancel()
        await asyncio.gather(*self.inflight.values(), return_exceptions=True)
        await self.http.aclose()


def build(host: ServiceHost) -> Callable[[], Awaitable[None]] | None:
    # httpx logs every request at INFO; the prober's own DEBUG line per probe replaces it.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    prober = Prober(host, host.settings.probe_failure_threshold, host.settings.probe_interval)
    host.loop(host.settings.probe_interval, prober.round, name="probe")
    host.task(prober.close_on_stop)
    return None


def main() -> None:
    run_main("prober", build)


if __name__ == "__main__":
    main()
