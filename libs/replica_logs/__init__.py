"""Replica logs over NATS request/reply: the provisioner owns them, the API asks.

The provisioner (whose provider writes each replica's setup and run output) answers on
``<bus prefix>.rpc.replica-logs`` (outside the event stream's ``<prefix>.ev.>``, so JetStream
never takes a request for an event). A request names a service and replica and either a byte
``offset`` or a ``tail`` in lines; the reply carries at most ``limit`` bytes and where to ask
next. Following a log is asking again from ``next_offset`` (``client.stream_log``). A ``list``
request answers which replicas of a service have a log, terminated ones included.

    protocol.py  the request and reply, the subject
    files.py     reading a chunk of a log file (the server side's I/O)
    server.py    the responder (the provisioner registers it)
    client.py    asking, and following a log chunk by chunk (the API's side)
    errors.py    the exception tree
"""

from .client import ReplicaLogClient, stream_log
from .errors import LogsUnavailable, ReplicaLogsError
from .protocol import LogReply, LogRequest, ReplicaList, logs_subject
from .server import LogLocator, serve_replica_logs

__all__ = [
    "LogLocator",
    "LogReply",
    "LogRequest",
    "LogsUnavailable",
    "ReplicaList",
    "ReplicaLogClient",
    "ReplicaLogsError",
    "logs_subject",
    "serve_replica_logs",
    "stream_log",
]
