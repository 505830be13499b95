"""Errors of libs.servers.

ServerError
└── ServerStartError   a server did not start; the message carries its log tail
"""

from __future__ import annotations


class ServerError(Exception):
    """Base of errors raised while running embedded NATS or Postgres."""


class ServerStartError(ServerError):
    pass
