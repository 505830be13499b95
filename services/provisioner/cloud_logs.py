"""Cloud replicas' logs, mirrored to this machine so ``stratus logs NAME ID`` reads them as a local
replica's: every round, each launched cloud replica's log server (``startup_logserver``, on the
VM's log port, behind its per-replica log token) is asked for what it wrote since the mirror's
size, and that is appended to the same file a local replica writes
(``Settings.replica_log``). The file stays after the VM is gone.

The same round reads the VM's ``/status``: a workload that exited while its VM still runs is
only visible there, so ``exit_status`` tells the ``CloudRouter`` (and so the monitor) about it.

``targets`` is pure (which replicas, where); ``pull`` / ``vm_phase`` do one replica's HTTP reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from libs.bootstrap import BootstrapError, log_token_for
from libs.fleet.state import FleetState
from libs.runtime.host import ServiceHost

from .clouds.base import InstanceState, InstanceStatus

log = logging.getLogger("stratus.provisioner.logs")

MIRROR_INTERVAL_SECONDS = 2.0
MAX_ROUNDS_PER_PULL = 16  # a round reads at most this many 1 MiB chunks per replica


@dataclass(frozen=True)
class Target:
    service: str
    replica_id: int
    log_url: str  # http://<VM address>:<log port>
    instance_id: str = ""


def targets(fleet: FleetState, log_port: int) -> list[Target]:
    """Launched cloud replicas not yet known to be gone."""
    out: list[Target] = []
    for svc in fleet.services.values():
        for r in svc.replicas.values():
            if r.placement.cloud in ("", "local") or not r.url or r.terminated_at is not None:
                continue
            host = urlsplit(r.url).hostname
            if host:
                out.append(Target(svc.name, r.replica_id, f"http://{host}:{log_port}", r.instance_id))
    return out


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _append(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("ab") as f:
        f.write(data)


async def pull(client: httpx.AsyncClient, target: Target, token: str, path: Path) -> int:
    """Append what the VM's log server has past the mirror's end; returns the bytes added."""
    added = 0
    for _ in range(MAX_ROUNDS_PER_PULL):
        offset = _size(path)
        resp = await client.get(
            f"{target.log_url}/log", params={"offset": offset}, headers={"Authorization": f"Bearer {token}"}
        )
        if resp.status_code != 200:
            raise httpx.HTTPStatusError(
                f"log server answered {resp.status_code}", request=resp.request, response=resp
            )
        if not resp.content:
            break
        _append(path, resp.content)
        added += len(resp.content)
        if offset + len(resp.content) >= int(resp.headers.get("X-Log-Size", "0") or 0):
            break
    return added


async def vm_phase(client: httpx.AsyncClient, target: Target, token: str) -> tuple[str, int | None]:
    """The runner's phase on the VM ("setup", "running", "exited"...) and its exit code."""
    resp = await client.get(f"{target.log_url}/status", headers={"Authorization": f"Bearer {token}"})
    if resp.status_code != 200:
        raise httpx.HTTPStatusError(
            f"log server answered {resp.status_code}", request=resp.request, response=resp
        )
    body = resp.json()
    code = body.get("exit_code")
    return str(body.get("phase", "")), int(code) if isinstance(code, int) else None


class LogMirror:
    def __init__(self, host: ServiceHost, timeout: float = 3.0) -> None:
        self.host = host
        self.timeout = timeout
        self._tokens: dict[tuple[str, int], str] = {}
        self._exits: dict[str, int | None] = {}  # instance id -> exit code, once the VM says "exited"

    def exit_status(self, instance_id: str) -> InstanceStatus | None:
        """EXITED if the VM's runner said its workload ended (None: nothing known)."""
        if instance_id not in self._exits:
            return None
        code = self._exits[instance_id]
        return InstanceStatus(
            state=InstanceState.EXITED, exit_code=code, detail=f"the VM's workload exited ({code})"
        )

    async def _token(self, service: str, replica_id: int) -> str | None:
        key = (service, replica_id)
        if key not in self._tokens:
            found = await log_token_for(self.host.store.pool, service, replica_id, self.host.settings.home)
            if found is None:
                return None
            self._tokens[key] = found
        return self._tokens[key]

    async def sync(self) -> None:
        """One round over every cloud replica; a VM that does not answer is skipped this round."""
        settings = self.host.settings
        async with httpx.AsyncClient(timeout=self.timeout) as client:
            for target in targets(self.host.fleet.state, settings.cloud_log_port):
                try:
                    token = await self._token(target.service, target.replica_id)
                    if token is None:
                        continue
                    path = settings.replica_log(target.service, target.replica_id)
                    await pull(client, target, token, path)
                    phase, code = await vm_phase(client, target, token)
                    if phase == "exited" and target.instance_id:
                        self._exits[target.instance_id] = code
                except (httpx.HTTPError, OSError, BootstrapError) as exc:
                    log.debug("log of %s replica %s: %s", target.service, target.replica_id, exc)
