"""Errors of the replica_logs package.

    ReplicaLogsError
    ├── LogsUnavailable     no log server answered in time (the provisioner is down or NATS is)
    └── BadLogMessage       a request or reply that does not decode (a foreign or newer peer)

nats-py and msgspec errors are translated into these at the boundary (``raise X from exc``).
"""

from __future__ import annotations


class ReplicaLogsError(Exception):
    """Base of every error raised by libs.replica_logs."""


class LogsUnavailable(ReplicaLogsError):
    """Nobody answered: the provisioner (which owns replica logs) or NATS is not reachable."""


class BadLogMessage(ReplicaLogsError):
    """A message on the logs subject that is not a valid request or reply."""
