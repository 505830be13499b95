"""``python -m services.provisioner.stop_local``: terminate every local replica (``stratus local down``).

Run as a process, not imported, so the CLI (part of the API service) never imports the
provisioner. Prints the number of replicas terminated; exit status 0.
"""

from __future__ import annotations

import asyncio

from libs.runtime.settings import Settings

from .clouds.local import LocalProvider


async def stop_all(settings: Settings) -> int:
    if not settings.provisioner_dir.exists():
        return 0
    provider = LocalProvider(settings.provisioner_dir)
    instances = await provider.list_instances()
    for inst in instances:
        await provider.terminate(inst.instance_id)
    return len(instances)


def main() -> None:
    print(asyncio.run(stop_all(Settings.from_env())))


if __name__ == "__main__":
    main()
