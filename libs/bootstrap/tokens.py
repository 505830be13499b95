"""One-time, expiring bootstrap tokens for cloud instances (table ``stratus_bootstrap_tokens``).

The provisioner ``issue``s a token before a cloud launch and puts it in the instance's startup
script; the instance trades it once at the API's ``POST /v1/bootstrap`` (``redeem``) for its
secret envs and its log token. Only the token's SHA-256 is stored, so the table cannot be used
to redeem. Each issue also creates the replica's log token (random; stored encrypted under the
service's data key from ``libs.secrets``), which the control plane reads back with
``log_token_for`` to fetch the instance's log (``node_log_tokens``: every node's, with its IP).

``refusal`` is the pure decision (unknown / used / expired / fine) given a row and ``now``.

A lost answer (the instance's request timed out, or the connection dropped, after the API had
used the token) is not a failed boot: the instance sends a random ``request_id`` with every
attempt, ``redeem`` records its SHA-256 as the redeemer, and the same requester may fetch the
answer again, at most ``MAX_REPLAYS`` times within ``REPLAY_SECONDS`` of the first use. Anyone
else holding the token (read from user-data later) still finds it used.

A multi-node replica (``num_nodes > 1``) gets one token per node, each with its ``node_rank``.
The nodes need every node's private IP (SkyPilot's ``SKYPILOT_NODE_IPS``), which exist only once
the cloud has created them all: the provisioner records them with ``set_node_ips`` after the
launch, and until then ``redeem`` raises ``ClusterNotReady`` without using the token (the node
retries). The answer then carries the rank, the node count and the IPs, head first.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias

import asyncpg
from cryptography.fernet import Fernet, InvalidToken

from libs.events.schema import BOOTSTRAP_DDL, BOOTSTRAP_NODES_DDL, BOOTSTRAP_REPLAY_DDL, apply_ddl
from libs.secrets.store import ensure_schema as ensure_secrets_schema
from libs.secrets.store import service_data_key

from .errors import BootstrapStoreError, ClusterNotReady, TokenExpired, TokenRefused, TokenUnknown, TokenUsed

Conn: TypeAlias = asyncpg.Pool | asyncpg.Connection
_SCHEMA_LOCK = 0x5354_0020
DEFAULT_TTL_SECONDS = 1800.0  # a GPU VM can take many minutes to boot

_SCHEMA = BOOTSTRAP_DDL  # the one text, in libs.events.schema's migration list (7)
_REPLAYS = BOOTSTRAP_REPLAY_DDL  # its migration 11: the redeemer columns
_NODES = BOOTSTRAP_NODES_DDL  # its migration 12: node rank, node count, node IPs
# A requester whose answer got lost may fetch it again this often, this long after the first use.
MAX_REPLAYS = 10
REPLAY_SECONDS = 600.0
MAX_REQUEST_ID = 128


@dataclass(frozen=True)
class Issued:
    token: str  # goes into the startup script; dead after first use or expiry
    log_token: str  # never into metadata: the instance gets it from redeem


@dataclass(frozen=True)
class Redeemed:
    service: str
    replica_id: int
    version: int
    log_token: str
    node_rank: int = 0
    num_nodes: int = 1
    node_ips: tuple[str, ...] = ()  # every node's private IP, head first; () for a single node


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def refusal(
    used_at: float | None, expires_at: float, now: float, *, same_requester: bool = False, replays: int = 0
) -> type[TokenRefused] | None:
    """Why a found token cannot be redeemed at ``now`` (None: it can). A used token can be, by the
    requester that used it (``same_requester``), ``MAX_REPLAYS`` times in ``REPLAY_SECONDS``."""
    if used_at is not None:
        if same_requester and replays < MAX_REPLAYS and now < used_at + REPLAY_SECONDS:
            return None
        return TokenUsed
    if now >= expires_at:
        return TokenExpired
    return None


def cluster_ready(num_nodes: int, node_ips: list[str] | None) -> bool:
    """Whether a node of a ``num_nodes`` replica may be answered: one node needs no peers, several
    need every node's IP recorded."""
    return num_nodes <= 1 or (node_ips is not None and len(node_ips) == num_nodes)


def _checked_ips(ips: list[str]) -> list[str]:
    out = []
    for ip in ips:
        try:
            out.append(str(ipaddress.ip_address(ip)))
        except ValueError as exc:
            raise ValueError(f"node IP {ip!r} is not an IP address") from exc
    return out


async def ensure_schema(conn: Conn) -> None:
    """Create the table (and the secrets tables whose data keys encrypt log tokens) if missing."""
    await ensure_secrets_schema(conn)
    try:
        await apply_ddl(conn, _SCHEMA_LOCK, _SCHEMA)
        await apply_ddl(conn, _SCHEMA_LOCK, _REPLAYS)
        await apply_ddl(conn, _SCHEMA_LOCK, _NODES)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BootstrapStoreError(f"cannot create the bootstrap tokens table: {exc}") from exc


async def issue(
    pool: asyncpg.Pool,
    service: str,
    replica_id: int,
    version: int,
    home: Path,
    *,
    ttl: float = DEFAULT_TTL_SECONDS,
    now: float | None = None,
    node_rank: int = 0,
    num_nodes: int = 1,
) -> Issued:
    """A new token for one launch of ``service`` replica ``replica_id`` at ``version`` (for node
    ``node_rank`` of ``num_nodes``: each node of a multi-node replica gets its own)."""
    if ttl <= 0:
        raise ValueError(f"ttl must be > 0 seconds, got {ttl}")
    if not 0 <= node_rank < num_nodes:
        raise ValueError(f"node rank {node_rank} outside 0..{num_nodes - 1}")
    await ensure_schema(pool)
    token, log_token = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    at = time.time() if now is None else now
    try:
        async with pool.acquire() as conn, conn.transaction():
            fernet = await service_data_key(conn, service, home)
            await conn.execute(
                "INSERT INTO stratus_bootstrap_tokens (token_sha256, service, replica_id, version, "
                "log_token_encrypted, issued_at, expires_at, node_rank, num_nodes) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                digest(token), service, replica_id, version, fernet.encrypt(log_token.encode()), at, at + ttl,
                node_rank, num_nodes,
            )  # fmt: skip
    except (OSError, asyncpg.PostgresError) as exc:
        raise BootstrapStoreError(
            f"cannot issue a bootstrap token for {service!r} replica {replica_id}: {exc}"
        ) from exc
    return Issued(token=token, log_token=log_token)


async def redeem(
    pool: asyncpg.Pool, token: str, home: Path, *, request_id: str = "", now: float | None = None
) -> Redeemed:
    """Use ``token`` (once): whose it is and the replica's log token; ``TokenRefused`` if not.

    ``request_id``: the instance's random id, the same in each of its attempts; with it, a repeat
    whose first answer got lost is answered again (bounded), without it a token works once.
    ``ClusterNotReady`` (the token stays unused): a multi-node replica's IPs are not recorded yet."""
    at = time.time() if now is None else now
    requester = digest(request_id) if request_id else None
    if len(request_id) > MAX_REQUEST_ID:
        raise TokenUnknown(f"a request id is at most {MAX_REQUEST_ID} characters")
    try:
        async with pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "SELECT service, replica_id, version, log_token_encrypted, used_at, expires_at, "
                "redeemed_by, replays, node_rank, num_nodes, node_ips "
                "FROM stratus_bootstrap_tokens WHERE token_sha256 = $1 FOR UPDATE",
                digest(token),
            )
            if row is None:
                raise TokenUnknown("no such bootstrap token")
            same = requester is not None and row["redeemed_by"] == requester
            why = refusal(row["used_at"], row["expires_at"], at, same_requester=same, replays=row["replays"])
            if why is not None:
                raise why(f"the bootstrap token is {why.reason}")
            ips = json.loads(row["node_ips"]) if row["node_ips"] else None
            if not cluster_ready(row["num_nodes"], ips):
                raise ClusterNotReady(
                    f"node {row['node_rank']} of {row['num_nodes']}: the other nodes' addresses are not "
                    "known yet (the provisioner records them once the cloud has created every node)"
                )
            if row["used_at"] is None:
                await conn.execute(
                    "UPDATE stratus_bootstrap_tokens SET used_at = $2, redeemed_by = $3 "
                    "WHERE token_sha256 = $1",
                    digest(token), at, requester,
                )  # fmt: skip
            else:  # the same requester again: its first answer was lost on the way
                await conn.execute(
                    "UPDATE stratus_bootstrap_tokens SET replays = replays + 1 WHERE token_sha256 = $1",
                    digest(token),
                )
            fernet = await service_data_key(conn, row["service"], home)
            log_token = _decrypt(fernet, bytes(row["log_token_encrypted"]), row["service"])
    except asyncpg.UndefinedTableError as exc:
        raise TokenUnknown("no such bootstrap token") from exc
    except (OSError, asyncpg.PostgresError) as exc:
        raise BootstrapStoreError(f"cannot redeem a bootstrap token: {exc}") from exc
    return Redeemed(
        row["service"], row["replica_id"], row["version"], log_token,
        node_rank=row["node_rank"], num_nodes=row["num_nodes"], node_ips=tuple(ips or ()),
    )  # fmt: skip


async def set_node_ips(
    pool: asyncpg.Pool,
    service: str,
    replica_id: int,
    version: int,
    ips: list[str],
    *,
    now: float | None = None,
) -> int:
    """Record every node's private IP (rank order, head first) on the unexpired node tokens of
    ``service`` replica ``replica_id`` at ``version`` whose node count is ``len(ips)``: the nodes
    may redeem them now. Returns how many tokens were updated. A repeated launch of the replica (a
    redelivered message) issues new tokens while the nodes hold the first ones: all get the IPs."""
    if len(ips) < 2:
        raise ValueError(f"a multi-node replica has at least 2 nodes, got IPs {ips!r}")
    text = json.dumps(_checked_ips(ips))
    at = time.time() if now is None else now
    await ensure_schema(pool)
    try:
        status = await pool.execute(
            "UPDATE stratus_bootstrap_tokens SET node_ips = $5 WHERE service = $1 AND replica_id = $2 "
            "AND version = $3 AND num_nodes = $4 AND expires_at > $6",
            service, replica_id, version, len(ips), text, at,
        )  # fmt: skip
    except (OSError, asyncpg.PostgresError) as exc:
        raise BootstrapStoreError(
            f"cannot record the node IPs of {service!r} replica {replica_id}: {exc}"
        ) from exc
    return int(str(status).rsplit(" ", 1)[-1])


async def log_token_for(pool: asyncpg.Pool, service: str, replica_id: int, home: Path) -> str | None:
    """The log token of the replica's latest launch (None: it was never issued one); of its head
    for a multi-node replica (each node's log server has its own: ``node_log_tokens`` gives them all)."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            enc = await conn.fetchval(
                "SELECT log_token_encrypted FROM stratus_bootstrap_tokens "
                "WHERE service = $1 AND replica_id = $2 AND node_rank = 0 ORDER BY issued_at DESC LIMIT 1",
                service, replica_id,
            )  # fmt: skip
            if enc is None:
                return None
            fernet = await service_data_key(conn, service, home)
    except asyncpg.UndefinedTableError:
        return None
    except (OSError, asyncpg.PostgresError) as exc:
        raise BootstrapStoreError(
            f"cannot read the log token of {service!r} replica {replica_id}: {exc}"
        ) from exc
    return _decrypt(fernet, bytes(enc), service)


@dataclass(frozen=True)
class NodeLogAccess:
    """How the control plane reads one node's log server: its rank, its recorded IP ("" until
    ``set_node_ips``; always "" for a single node) and its own log token."""

    rank: int
    ip: str
    log_token: str


async def node_log_tokens(
    pool: asyncpg.Pool, service: str, replica_id: int, home: Path
) -> list[NodeLogAccess]:
    """Every node of the replica's latest launch (its newest token's version and node count), by
    rank, each with the newest log token issued for that rank ([]: it was never issued one)."""
    try:
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "WITH latest AS (SELECT version, num_nodes FROM stratus_bootstrap_tokens "
                "WHERE service = $1 AND replica_id = $2 ORDER BY issued_at DESC LIMIT 1) "
                "SELECT DISTINCT ON (t.node_rank) t.node_rank, t.node_ips, t.log_token_encrypted "
                "FROM stratus_bootstrap_tokens t JOIN latest l ON t.version = l.version "
                "AND t.num_nodes = l.num_nodes WHERE t.service = $1 AND t.replica_id = $2 "
                "ORDER BY t.node_rank, t.issued_at DESC",
                service, replica_id,
            )  # fmt: skip
            if not rows:
                return []
            fernet = await service_data_key(conn, service, home)
    except asyncpg.UndefinedTableError:
        return []
    except (OSError, asyncpg.PostgresError) as exc:
        raise BootstrapStoreError(
            f"cannot read the node log tokens of {service!r} replica {replica_id}: {exc}"
        ) from exc
    out = []
    for row in rows:
        ips = json.loads(row["node_ips"]) if row["node_ips"] else []
        rank = row["node_rank"]
        ip = str(ips[rank]) if rank < len(ips) else ""
        out.append(NodeLogAccess(rank, ip, _decrypt(fernet, bytes(row["log_token_encrypted"]), service)))
    return out


def _decrypt(fernet: Fernet, data: bytes, service: str) -> str:
    try:
        value = fernet.decrypt(data)
    except InvalidToken as exc:
        raise BootstrapStoreError(
            f"the log token of {service!r} does not decrypt: the service's data key changed (purged?)"
        ) from exc
    return value.decode()
