"""``POST /v1/bootstrap``: a cloud instance trades its one-time token for its secrets, once.

Authorization is the bootstrap token itself (``Authorization: Bearer <token>``, issued by the
provisioner with ``libs.bootstrap.issue`` and carried in the instance's startup script), so the
API's general authentication exempts this route. The answer holds the replica's secret envs
and its log token: it is never logged, and ``Cache-Control: no-store`` keeps proxies from it.
A second call with the same token, an expired or unknown one, gets 401 / 410 and no values,
except the same instance retrying an answer it lost (the same ``request_id``; bounded, see
``libs.bootstrap.tokens``).

A node of a multi-node replica asking before the provisioner has recorded every node's IP gets
503 with ``Retry-After`` (its token stays unused); once they are recorded, the answer carries the
node's rank, the node count and every node's private IP, head first.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Response
from pydantic import BaseModel, Field

from libs.bootstrap import (
    BootstrapStoreError,
    ClusterNotReady,
    TokenExpired,
    TokenUnknown,
    TokenUsed,
    redeem,
)
from libs.secrets import SecretsError, load_secrets

from ..deps import ApiDeps
from ..errors import ApiError, Unavailable
from ..models import ErrorOut


class TokenUnauthorized(ApiError):
    status_code = 401
    code = "bootstrap_token_unknown"


class TokenGone(ApiError):
    status_code = 410
    code = "bootstrap_token_gone"


# Seconds a node waits before asking again while the other nodes are still being created.
CLUSTER_RETRY_SECONDS = 5


class ClusterStarting(ApiError):
    status_code = 503
    code = "bootstrap_cluster_not_ready"
    headers = {"Retry-After": str(CLUSTER_RETRY_SECONDS)}


class BootstrapIn(BaseModel):
    request_id: str = Field(
        default="", max_length=128,
        description="The instance's random id, the same in each attempt: a repeat whose answer was lost "
        "is answered again (bounded); anyone else gets 410.",
    )  # fmt: skip


class BootstrapOut(BaseModel):
    envs: dict[str, str] = Field(description="The replica's secret env values (name -> value).")
    log_token: str = Field(description="The token the replica's log server requires.")
    node_rank: int = Field(default=0, description="This node's rank in its replica (0: the head).")
    num_nodes: int = Field(default=1, description="The replica's node count (SkyServe's num_nodes).")
    node_ips: list[str] = Field(
        default=[], description="Every node's private IP, head first (multi-node replicas; else empty)."
    )

    def __repr__(self) -> str:
        return f"BootstrapOut(envs={sorted(self.envs)}, log_token='***')"


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No token, or one that was never issued"},
    410: {"model": ErrorOut, "description": "The token was used already or expired"},
    503: {
        "model": ErrorOut,
        "description": "Retry (see Retry-After): a multi-node replica's other nodes are not created yet, "
        "or the secrets cannot be read now",
    },
}


def bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenUnauthorized("send the bootstrap token as `Authorization: Bearer <token>`")
    return token.strip()


def build(deps: ApiDeps) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["bootstrap"], responses=ERRORS)

    @router.post("/bootstrap", summary="A cloud instance fetches its secret envs (one-time token)")
    async def bootstrap(
        response: Response, body: BootstrapIn | None = None, authorization: str | None = Header(default=None)
    ) -> BootstrapOut:
        token = bearer(authorization)
        pool, home = deps.store.pool, deps.settings.home
        try:
            got = await redeem(pool, token, home, request_id=body.request_id if body else "")
            envs = await load_secrets(pool, got.service, got.version, home)
        except TokenUnknown as exc:
            raise TokenUnauthorized("unknown bootstrap token: it was never issued (or is mistyped)") from exc
        except ClusterNotReady as exc:
            retry = f"; retry in {CLUSTER_RETRY_SECONDS} s (the token stays valid)"
            raise ClusterStarting(f"{exc}{retry}") from exc
        except (TokenUsed, TokenExpired) as exc:
            raise TokenGone(
                f"the bootstrap token is {exc.reason}: it works once, before its expiry; the "
                "provisioner issues a new one with each launch"
            ) from exc
        except (BootstrapStoreError, SecretsError) as exc:
            raise Unavailable(f"cannot read the replica's secrets now ({type(exc).__name__}); retry") from exc
        response.headers["Cache-Control"] = "no-store"
        return BootstrapOut(
            envs=envs, log_token=got.log_token, node_rank=got.node_rank, num_nodes=got.num_nodes,
            node_ips=list(got.node_ips),
        )  # fmt: skip

    return router
