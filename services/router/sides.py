"""What a client connection uses of its service endpoint (a protocol, so imports run one way)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, TypeVar

from services.router.exchange_base import EndpointSide
from services.router.options import EndpointOptions
from services.router.replicas import ReplicaPool

C = TypeVar("C")


class ClientEndpoint(EndpointSide, Protocol[C]):
    """The endpoint as its client connections (of type ``C``) see it."""

    @property
    def pool(self) -> ReplicaPool: ...

    @property
    def clients(self) -> set[C]: ...

    @property
    def options(self) -> EndpointOptions: ...

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def key_check(self) -> Callable[[bytes], bool] | None: ...
