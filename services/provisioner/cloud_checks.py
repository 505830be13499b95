"""The provisioner's cloud credentials check: which providers it has, recorded as ``CloudsChecked``.

At start-up and every ``STRATUS_CLOUD_CHECK_INTERVAL`` seconds: read ``allowed_clouds``, run
each allowed cloud's credential check (``clouds/check.py``), add the provider of every cloud
that became enabled to the ``CloudRouter`` (a loaded provider stays: its instances must stay
reachable even if a later check fails), and append ``CloudsChecked`` to the clouds stream when
the answer differs from the last one recorded (``stratus check`` reads it).
"""

from __future__ import annotations

import logging
import os

from libs.catalog.config import allowed_clouds
from libs.catalog.errors import CatalogConfigError
from libs.events.types import CLOUDS_STREAM, CloudsChecked
from libs.runtime.host import ServiceHost

from .clouds.base import CloudCheck
from .clouds.check import CLOUDS, check_clouds, same_answer, summarize
from .clouds.errors import LaunchError
from .clouds.registry import CloudRouter, load_provider

log = logging.getLogger("stratus.provisioner.clouds")


def _last_recorded(host: ServiceHost) -> CloudsChecked | None:
    state = host.fleet.state.clouds
    if state is None:
        return None
    return CloudsChecked(
        service="", enabled=list(state.enabled), disabled=dict(state.disabled), allowed=list(state.allowed)
    )


async def refresh_clouds(host: ServiceHost, router: CloudRouter) -> CloudsChecked:
    """Check, update ``router``, and record the answer if it changed; returns it."""
    try:
        allowed = list(allowed_clouds(host.settings.home))
        checks = await check_clouds(allowed)
    except CatalogConfigError as exc:
        allowed = []
        checks = [CloudCheck(cloud=c, enabled=False, reason=str(exc), hint="fix config.yaml") for c in CLOUDS]
    final: list[CloudCheck] = []
    for check in checks:
        if check.enabled and check.cloud not in router.providers:
            try:
                router.providers[check.cloud] = load_provider(check.cloud, host.settings)
                log.info("cloud %s enabled (%s)", check.cloud, check.reason)
            except LaunchError as exc:
                check = CloudCheck(
                    cloud=check.cloud, enabled=False, reason=str(exc), hint="see the provisioner log"
                )
        final.append(check)
    answer = summarize(final, allowed, provisioner_id=f"provisioner-{os.getpid()}")
    router.disabled = dict(answer.disabled)
    if not same_answer(_last_recorded(host), answer):
        result = await host.store.append(CLOUDS_STREAM, [answer])
        await host.fleet.wait_for(result.last_position, 10.0)
        log.info("clouds checked: enabled %s, disabled %s", answer.enabled, sorted(answer.disabled))
    return answer
