"""The fault matrix: two instances of every service and of the relay, a service kept at 2 or 3
READY replicas by `update`, bounded traffic through its endpoint, and in turn: kill -9 of one
instance of each service, of the relay leader, of nats-server (restarted, then restarted with its
store removed), of Postgres (every process of it at once, restarted by the supervisor: crash
recovery; then kept down past every lease), Postgres hung (SIGSTOP) past every lease, SIGSTOP of
the prober leader for longer than its lease, and the whole control plane frozen; and a
preemption requested while every provisioner is down. After each:

- convergence: the latest version has the wanted READY replicas within 30 s;
- 0 duplicate launches: no replica id scheduled, launched or terminated twice; the replica
  processes running are exactly the launched, not terminated ones;
- 0 events lost: the relay's offset reaches the head of the log, and every event of a tracked
  consumer's types is handled (tracked, or below its floor) or dead-lettered (none are);
- 0 applied twice: every event's effects above are once;
- the endpoint kept answering: every request of the traffic got a 200 (a router being killed
  may drop the connections it holds: those are retried once by the client, and counted).

The stack's nats-server and Postgres are its own (tests/faults/conftest.py), not the machine's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from services.autoscaler.main import TYPES as AUTOSCALER_TYPES
from services.provisioner.main import TYPES as PROVISIONER_TYPES
from services.scheduler.main import TYPES as SCHEDULER_TYPES
from tests.e2e.conftest import Stack
from tests.e2e.scaling import alive, running_instances, service_yaml, site

from .conftest import LEASE_TTL, stack_database

pytestmark = pytest.mark.timeout(900)

NAME = "fm"
CONVERGE = 30.0
TRACKED = {"scheduler": SCHEDULER_TYPES, "provisioner": PROVISIONER_TYPES, "autoscaler": AUTOSCALER_TYPES}


def db(stack: Stack) -> str:
    return stack_database(stack)


def query(stack: Stack, sql: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(db(stack))
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    return asyncio.run(run())


def leader_pid(stack: Stack, lease: str) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        rows = query(stack, "SELECT holder FROM stratus_leases WHERE name = $1 AND expires_at > now()", lease)
        if rows:
            return int(rows[0][0].split(":")[1])  # kind@host:pid:suffix
        time.sleep(0.2)
    raise AssertionError(f"no live holder of lease {lease}")


def component_of(stack: Stack, pid: int) -> str:
    for name, info in stack.supervisor_state()["components"].items():
        if info.get("pid") == pid:
            return str(name)
    raise AssertionError(f"pid {pid} is no component")


class Traffic:
    """A request every 0.1 s through the endpoint, in a thread; each failure kept."""

    def __init__(self, url: str) -> None:
        import threading

        self.url = url
        self.ok = 0
        self.retried = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            for attempt in (1, 2):
                try:
                    with httpx.Client(timeout=10) as client:  # a new connection each time
                        r = client.get(self.url)
                    if r.status_code == 200 and "fault-matrix" in r.text:
                        self.ok += 1
                    else:
                        self.failures.append(f"{r.status_code}: {r.text[:200]}")
                    break
                except httpx.TransportError as exc:
                    if attempt == 2:
                        self.failures.append(repr(exc))
                    else:
                        self.retried += 1


def second_api(stack: Stack) -> str:
    scheme, _, rest = stack.api_url.partition("://")
    host, _, port = rest.partition(":")
    return f"{scheme}://{host}:{int(port.split('/')[0]) + 1}"


def ready_latest(svc: dict[str, Any]) -> int:
    latest = max((r["version"] for r in svc["replicas"]), default=0)
    return sum(1 for r in svc["replicas"] if r["status"] == "READY" and r["version"] == latest)


def settled(want: int) -> Callable[[dict[str, Any]], bool]:
    def test(svc: dict[str, Any]) -> bool:
        return ready_latest(svc) == want and len(alive(svc)) == want

    return test


def check_invariants(stack: Stack) -> None:
    events = stack.events(NAME)
    for kind in ("ReplicaScheduled", "ReplicaLaunched", "ReplicaTerminationRequested", "ReplicaTerminated"):
        counts = Counter(e["data"]["replica_id"] for e in events if e["type"] == kind)
        assert all(n == 1 for n in counts.values()), f"{kind} twice for a replica: {counts}"
    scale = [e for e in events if e["type"] == "ScaleDecided"]
    pairs = Counter((e["data"].get("target"), e["occurred_at"]) for e in scale)
    assert all(n == 1 for n in pairs.values()), f"a ScaleDecided recorded twice: {pairs}"
    # The replica processes are exactly the launched replicas not terminated. A replaced replica's
    # process ends before its ReplicaTerminated is appended: both sides are read again until they
    # agree (bounded).
    def launched_not_terminated(events: list[dict[str, Any]]) -> set[str]:
        launched = {
            e["data"]["replica_id"]: e["data"]["instance_id"]
            for e in events
            if e["type"] == "ReplicaLaunched"
        }
        ended = {e["data"]["replica_id"] for e in events if e["type"] == "ReplicaTerminated"}
        return {iid for rid, iid in launched.items() if rid not in ended}

    expected = launched_not_terminated(events)
    deadline = time.monotonic() + 15
    while (running := running_instances(stack, NAME)) != expected and time.monotonic() < deadline:
        time.sleep(0.3)
        expected = launched_not_terminated(stack.events(NAME))
    assert running == expected, f"running {running}, launched and not terminated {expected}"


# Events of a consumer's types, up to the head, neither tracked, below its floor nor dead-lettered.
GAPS = """
SELECT e.position, e.event_type FROM stratus_events e
WHERE e.event_type = ANY($2::text[]) AND e.position <= $3
  AND e.position > coalesce((SELECT position FROM stratus_tracking_floor WHERE consumer = $1), 0)
  AND NOT EXISTS (SELECT 1 FROM stratus_tracking t WHERE t.consumer = $1 AND t.position = e.position)
  AND NOT EXISTS (SELECT 1 FROM stratus_dead_letters d WHERE d.consumer = $1 AND d.position = e.position)
"""


def check_nothing_lost(stack: Stack) -> None:
    deadline = time.monotonic() + CONVERGE
    head = offset = -1
    while time.monotonic() < deadline:
        head = query(stack, "SELECT max(position) FROM stratus_events")[0][0]
        offset = query(stack, "SELECT coalesce(max(position), 0) FROM stratus_relay_offsets")[0][0]
        if offset >= head:
            break
        time.sleep(0.3)
    assert offset >= head, f"the relay stopped at {offset} of {head}"
    for consumer, types in TRACKED.items():
        gaps: list[asyncpg.Record] = []
        while time.monotonic() < deadline + CONVERGE:
            gaps = query(stack, GAPS, consumer, list(types), head)
            if not gaps:
                break
            time.sleep(0.5)
        assert not gaps, f"{consumer}: events not handled: {[tuple(g) for g in gaps][:10]}"
    dead = query(stack, "SELECT consumer, position, reason FROM stratus_dead_letters")
    assert not dead, [tuple(d) for d in dead]


# --------------------------------------------------------------------------- faults


def kill(stack: Stack, component: str) -> None:
    stack.kill_component(component)


def kill_leader(lease: str) -> Callable[[Stack], None]:
    def fault(stack: Stack) -> None:
        kill(stack, component_of(stack, leader_pid(stack, lease)))

    return fault


def stop_longer_than_lease(stack: Stack) -> None:
    pid = leader_pid(stack, "prober")
    os.kill(pid, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + 4 * LEASE_TTL + 5
        while time.monotonic() < deadline:  # the standby takes over while it is stopped
            if leader_pid(stack, "prober") != pid:
                break
            time.sleep(0.2)
        assert leader_pid(stack, "prober") != pid, "the standby prober did not take over"
    finally:
        os.kill(pid, signal.SIGCONT)


def restart_nats(stack: Stack) -> None:
    kill(stack, "nats")


def wipe_nats(stack: Stack) -> None:
    """nats-server loses its store: killed, its directory removed, restarted empty."""
    import shutil

    pid = stack.component_pid("nats")
    os.kill(pid, signal.SIGSTOP)  # hold it while its store goes
    shutil.rmtree(Path(stack.home) / "nats", ignore_errors=True)
    os.kill(pid, signal.SIGCONT)
    kill(stack, "nats")


def _crash_postgres(stack: Stack) -> int:
    """Every process of Postgres kill -9ed at once (the postmaster held still first so it cannot
    react): its pid."""
    import psutil

    pid = stack.component_pid("postgres")
    postmaster = psutil.Process(pid)
    postmaster.suspend()
    for child in postmaster.children(recursive=True):
        child.kill()
    postmaster.kill()
    return pid


def kill_postgres(stack: Stack) -> None:
    """Postgres crashes, and the supervisor restarts it at once (crash recovery)."""
    old = _crash_postgres(stack)
    wait_restarted(stack, "postgres", old)


def postgres_down(stack: Stack) -> None:
    """Postgres crashes and stays down for two lease TTLs (the supervisor is held meanwhile):
    every lease expires, every store call fails; then it comes back."""
    assert stack.proc is not None
    supervisor = stack.proc.pid
    os.kill(supervisor, signal.SIGSTOP)
    try:
        old = _crash_postgres(stack)
        time.sleep(2 * LEASE_TTL)  # the fault's duration itself, not a synchronisation
    finally:
        os.kill(supervisor, signal.SIGCONT)
    wait_restarted(stack, "postgres", old)


def freeze_postgres(stack: Stack) -> None:
    """Postgres hangs (every process of it SIGSTOPped) for two lease TTLs, as behind a
    partition: connections stay open but nothing answers; then it carries on."""
    import psutil

    postmaster = psutil.Process(stack.component_pid("postgres"))
    procs = [postmaster, *postmaster.children(recursive=True)]
    for proc in procs:
        proc.suspend()
    try:
        time.sleep(2 * LEASE_TTL)  # the fault's duration itself, not a synchronisation
    finally:
        for proc in procs:
            proc.resume()


def wait_restarted(stack: Stack, component: str, old: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            pid = stack.supervisor_state()["components"][component].get("pid")
        except (OSError, ValueError):  # replaced while we read it
            pid = None
        if isinstance(pid, int) and pid != old:
            return
        time.sleep(0.1)
    raise AssertionError(f"the supervisor did not restart {component} within {timeout}s")


def freeze_control_plane(stack: Stack) -> None:
    """Everything but the routers stopped for 6 s: the endpoint must keep answering."""
    names = [n for n in stack.supervisor_state()["components"] if not n.startswith(("router", "postgres"))]
    pids = [stack.component_pid(n) for n in names]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    time.sleep(6)  # the fault's duration itself, not a synchronisation
    for pid in pids:
        os.kill(pid, signal.SIGCONT)


CASES: list[tuple[str, Callable[[Stack], None]]] = [
    ("api-1", lambda s: kill(s, "api-1")),
    ("scheduler-1", lambda s: kill(s, "scheduler-1")),
    ("provisioner-1", lambda s: kill(s, "provisioner-1")),
    ("provisioner-2", lambda s: kill(s, "provisioner-2")),
    ("prober-leader", kill_leader("prober")),
    ("autoscaler-1", lambda s: kill(s, "autoscaler-1")),
    ("router-1", lambda s: kill(s, "router-1")),
    ("relay-leader", kill_leader("relay:default")),
    ("prober-sigstop", stop_longer_than_lease),
    ("nats-restart", restart_nats),
    ("nats-store-lost", wipe_nats),
    ("postgres-kill", kill_postgres),
    ("postgres-down", postgres_down),
    ("postgres-frozen", freeze_postgres),
    ("control-plane-frozen", freeze_control_plane),
]


@pytest.fixture(scope="module")
def deployed(ha_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("fm")
    workdir = site(tmp, "site", "fault-matrix")
    spec = service_yaml(tmp / "fm.yaml", workdir, replicas=2, initial_delay=20)
    r = ha_stack.cli("up", str(spec), "-n", NAME, "-y", "--detach", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    svc = ha_stack.wait(NAME, settled(2), timeout=120, what="2 READY replicas")
    return {"tmp": tmp, "workdir": workdir, "endpoint": svc["endpoint"], "replicas": 2}


@pytest.mark.parametrize("fault", [f for _, f in CASES], ids=[n for n, _ in CASES])
def test_fault(
    ha_stack: Stack, deployed: dict[str, Any], fault: Callable[[Stack], None], request: pytest.FixtureRequest
) -> None:
    want = 3 if deployed["replicas"] == 2 else 2
    spec = service_yaml(
        deployed["tmp"] / f"fm-{want}.yaml", deployed["workdir"], replicas=want, initial_delay=20
    )
    with Traffic(f"http://{deployed['endpoint']}/") as traffic:
        fault(ha_stack)
        started = time.monotonic()
        # Through the second API instance: the first may be the one just killed.
        for _ in range(3):  # a concurrent change is refused with "run the update again": bounded retry
            r = ha_stack.cli(
                "--api-url", second_api(ha_stack), "update", NAME, str(spec), "-y", "--async", timeout=60
            )
            if "run the update again" not in r.stderr:
                break
        assert r.returncode == 0, r.stdout + r.stderr
        ha_stack.wait(NAME, settled(want), timeout=CONVERGE + 30, what=f"{want} READY replicas")
        took = time.monotonic() - started
    deployed["replicas"] = want
    assert took <= CONVERGE + 15, f"converged in {took:.1f}s"  # the update's own rollout included
    assert traffic.ok > 0 and not traffic.failures, (traffic.ok, traffic.failures[:5])
    print(
        f"\nfault-matrix {request.node.callspec.id}: {want} READY in {took:.1f}s after the fault;"
        f" {traffic.ok} requests answered, {traffic.retried} retried on a new connection"
    )
    check_invariants(ha_stack)
    check_nothing_lost(ha_stack)


# --------------------------------------------------------------------------- a missed preemption


def purge_bus(stack: Stack, service: str, event_type: str) -> None:
    """Remove every message of ``event_type`` of ``service`` from the stack's JetStream stream
    (as an expired consumer or a lost store would lose them)."""
    import json

    import nats

    from libs.runtime.host import bus_config
    from libs.runtime.settings import Settings

    url = json.loads((Path(stack.home) / "run" / "env.json").read_text())["NATS_URL"]
    bus = bus_config(Settings(bus_prefix=stack.env["STRATUS_BUS_PREFIX"]))

    async def run() -> None:
        nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
        try:
            await nc.jetstream().purge_stream(bus.stream, subject=bus.subject(service, event_type))
        finally:
            await nc.close()

    asyncio.run(asyncio.wait_for(run(), 10))


def test_a_preemption_requested_while_every_provisioner_is_down_is_acted_on_once(
    ha_stack: Stack, deployed: dict[str, Any]
) -> None:
    """Both provisioners stopped, a replica's preemption requested, its bus message lost, both
    killed and restarted: the restarted provisioners find the request in their projection and
    preempt the replica once; it is replaced. (No traffic check here: requests routed to the
    replica while it is being preempted fail, as with a cloud's preemption.)"""
    want = deployed["replicas"]
    svc = ha_stack.wait(NAME, settled(want), timeout=CONVERGE, what=f"{want} READY replicas")
    target = min(r["replica_id"] for r in svc["replicas"] if r["status"] == "READY")
    provisioners = [n for n in ha_stack.supervisor_state()["components"] if n.startswith("provisioner")]
    for name in provisioners:
        os.kill(ha_stack.component_pid(name), signal.SIGSTOP)  # down: neither can act from here on
    r = ha_stack.cli("--api-url", second_api(ha_stack), "debug", "preempt", NAME, str(target), timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    head = query(ha_stack, "SELECT max(position) FROM stratus_events")[0][0]
    deadline = time.monotonic() + CONVERGE
    while query(ha_stack, "SELECT coalesce(max(position), 0) FROM stratus_relay_offsets")[0][0] < head:
        assert time.monotonic() < deadline, "the relay did not publish the request"
        time.sleep(0.2)
    purge_bus(ha_stack, NAME, "PreemptionRequested")  # the message is gone: only the log has it
    started = time.monotonic()
    for name in provisioners:
        kill(ha_stack, name)  # kill -9 the stopped process; the supervisor starts a new one

    def replaced(svc: dict[str, Any]) -> bool:
        return target not in {r["replica_id"] for r in alive(svc)} and settled(want)(svc)

    ha_stack.wait(NAME, replaced, timeout=CONVERGE + 15, what=f"replica {target} preempted and replaced")
    took = time.monotonic() - started
    assert took <= CONVERGE, f"replaced in {took:.1f}s"
    events = ha_stack.events(NAME)
    of_target = Counter(e["type"] for e in events if e["data"].get("replica_id") == target)
    assert of_target["PreemptionRequested"] == 1 and of_target["PreemptionStarted"] == 1, of_target
    assert of_target["Preempted"] == 1 and of_target["ReplicaTerminated"] <= 1, of_target
    print(f"\nfault-matrix preempt-while-provisioners-down: replica {target} replaced in {took:.1f}s")
    check_invariants(ha_stack)
