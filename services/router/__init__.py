"""Stratus router: the services' endpoints, a fast HTTP/1.1 reverse proxy.

Public API::

    Router(host, options)            many services in one process
      await add_service(name, port=0, policy="least_load", options=..., host=...) -> port
      await remove_service(name); pool(name); endpoint(name); take_request_counts(); await close()
    ReplicaPool(service, policy)     runtime-updatable replica set of one service
      set_ready(id, url, version=1); set_not_ready(id); drain(id); remove(id)
      in_flight(id); await wait_drained(id, timeout); set_policy(name)
      set_active_versions(set | None); take_request_count(); replicas()
    ServiceEndpoint(pool, options)   one listening endpoint
      await start(host, port) -> port; await close(grace=0); take_request_count()
    EndpointOptions(...)             hold-when-empty, timeouts, retries

Command line: ``python -m services.router.standalone --port P --backends h:p,h:p``.
"""

from services.router.endpoint import ServiceEndpoint
from services.router.options import EndpointOptions
from services.router.replicas import ReplicaInfo, ReplicaPool, ReplicaState
from services.router.router import Router

__all__ = ["EndpointOptions", "ReplicaInfo", "ReplicaPool", "ReplicaState", "Router", "ServiceEndpoint"]
