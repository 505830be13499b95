"""Which clouds can be used now, and for each that cannot, why and what to do (``stratus check``).

Each check asks only its SDK's standard credential chain, in a thread (the SDKs block):

    aws    boto3's chain (env, ~/.aws profiles, SSO, instance profile), then STS GetCallerIdentity
    gcp    google.auth.default(): Application Default Credentials, and a project
    azure  AZURE_SUBSCRIPTION_ID, and DefaultAzureCredential getting an ARM token

``summarize`` folds the per-cloud answers and ``allowed_clouds`` into a ``CloudsChecked`` (pure).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable

from libs.events.types import CloudsChecked

from .base import CloudCheck

CLOUDS: tuple[str, ...] = ("aws", "gcp", "azure")
CHECK_TIMEOUT_SECONDS = 20.0

AWS_HINT = (
    "run `aws configure` (or `aws sso login`), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(AWS_PROFILE picks a profile); then `stratus check` again"
)
GCP_HINT = (
    "run `gcloud auth application-default login` and `gcloud config set project <id>`, or set "
    "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
)
AZURE_HINT = (
    "run `az login` (or set AZURE_CLIENT_ID/AZURE_TENANT_ID/AZURE_CLIENT_SECRET) and set "
    "AZURE_SUBSCRIPTION_ID to the subscription to launch in"
)


def _aws_check() -> CloudCheck:
    import boto3
    import botocore.exceptions

    try:
        session = boto3.Session()
        creds = session.get_credentials()
        if creds is None:
            return CloudCheck(cloud="aws", enabled=False, reason="no AWS credentials found", hint=AWS_HINT)
        ident = session.client("sts", region_name=session.region_name or "us-east-1").get_caller_identity()
    except botocore.exceptions.ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        return CloudCheck(
            cloud="aws", enabled=False, reason=f"AWS rejected the credentials ({code}): {exc}", hint=AWS_HINT
        )
    except botocore.exceptions.BotoCoreError as exc:
        return CloudCheck(
            cloud="aws", enabled=False, reason=f"AWS credential check failed: {exc}", hint=AWS_HINT
        )
    return CloudCheck(cloud="aws", enabled=True, reason=f"account {ident.get('Account', '?')}")


def _gcp_check() -> CloudCheck:
    import google.auth
    import google.auth.exceptions

    try:
        _creds, project = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    except google.auth.exceptions.GoogleAuthError as exc:
        return CloudCheck(cloud="gcp", enabled=False, reason=f"no Google credentials: {exc}", hint=GCP_HINT)
    if not project:
        return CloudCheck(
            cloud="gcp", enabled=False, reason="Google credentials found but no project", hint=GCP_HINT
        )
    return CloudCheck(cloud="gcp", enabled=True, reason=f"project {project}")


def _azure_check() -> CloudCheck:
    subscription = os.environ.get("AZURE_SUBSCRIPTION_ID", "")
    if not subscription:
        return CloudCheck(
            cloud="azure", enabled=False, reason="AZURE_SUBSCRIPTION_ID is not set", hint=AZURE_HINT
        )
    from azure.core.exceptions import AzureError, ClientAuthenticationError
    from azure.identity import DefaultAzureCredential

    try:
        with DefaultAzureCredential() as cred:
            cred.get_token("https://management.azure.com/.default")
    except ClientAuthenticationError as exc:
        reason = f"no usable Azure credential: {str(exc).splitlines()[0]}"
        return CloudCheck(cloud="azure", enabled=False, reason=reason, hint=AZURE_HINT)
    except AzureError as exc:
        return CloudCheck(cloud="azure", enabled=False, reason=f"Azure check failed: {exc}", hint=AZURE_HINT)
    return CloudCheck(cloud="azure", enabled=True, reason=f"subscription {subscription}")


SYNC_CHECKS: dict[str, Callable[[], CloudCheck]] = {
    "aws": _aws_check,
    "gcp": _gcp_check,
    "azure": _azure_check,
}


async def check_cloud(cloud: str) -> CloudCheck:
    """One cloud's check, in a thread, bounded in time."""
    fn = SYNC_CHECKS.get(cloud)
    if fn is None:
        return CloudCheck(
            cloud=cloud, enabled=False, reason=f"unknown cloud {cloud!r}", hint=f"use one of {CLOUDS}"
        )
    try:
        return await asyncio.wait_for(asyncio.to_thread(fn), CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return CloudCheck(
            cloud=cloud,
            enabled=False,
            reason=f"credential check timed out after {CHECK_TIMEOUT_SECONDS:.0f} s",
            hint="check network access to the cloud's API endpoints",
        )


def not_allowed(cloud: str, allowed: Iterable[str]) -> CloudCheck:
    return CloudCheck(
        cloud=cloud, enabled=False, reason=f"not in allowed_clouds {sorted(allowed)}",
        hint="add it to allowed_clouds in $STRATUS_HOME/config.yaml",
    )  # fmt: skip


async def check_clouds(
    allowed: list[str], checks: dict[str, Callable[[], Awaitable[CloudCheck]]] | None = None
) -> list[CloudCheck]:
    """Every cloud's check; clouds outside a non-empty ``allowed`` are not asked."""
    out: list[CloudCheck] = []
    for cloud in CLOUDS:
        if allowed and cloud not in allowed:
            out.append(not_allowed(cloud, allowed))
            continue
        fn = (checks or {}).get(cloud)
        out.append(await (fn() if fn is not None else check_cloud(cloud)))
    return out


def summarize(checks: Iterable[CloudCheck], allowed: list[str], provisioner_id: str = "") -> CloudsChecked:
    """The event recording ``checks`` (local is always enabled and not listed)."""
    enabled: list[str] = []
    disabled: dict[str, str] = {}
    for c in checks:
        if c.enabled:
            enabled.append(c.cloud)
        else:
            disabled[c.cloud] = f"{c.reason.rstrip('.')}. To fix: {c.hint}" if c.hint else c.reason
    return CloudsChecked(
        service="", enabled=sorted(enabled), disabled=disabled, allowed=sorted(allowed),
        provisioner_id=provisioner_id,
    )  # fmt: skip


def same_answer(a: CloudsChecked | None, b: CloudsChecked) -> bool:
    """Whether ``b`` says nothing new compared with ``a`` (then it is not appended again)."""
    return a is not None and (a.enabled, a.disabled, a.allowed) == (b.enabled, b.disabled, b.allowed)
