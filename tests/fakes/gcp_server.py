"""A fake Compute Engine REST API: the calls the GCP provider makes, over plain HTTP on loopback.

The real google-cloud-compute clients (REST transport) talk to it with only
``client_options.api_endpoint`` changed and ``AnonymousCredentials``. State lives in memory:

- ``instances`` insert / get / list / aggregatedList / delete, keyed by (zone, name). Insert
  answers a PENDING zonal Operation; the instance exists at once as STAGING and turns RUNNING
  when its insert operation is observed DONE (``operations.wait`` or ``get``), as GCP does.
  List filters understood: ``labels.K = "V"``, ``labels.K:*`` (and ``targetId = "N"`` for
  operations). Instances get an internal ``networkIP`` (10.128.0.x) and, when they ask for an
  access config, an external ``natIP`` (203.0.113.x, TEST-NET-3).
- ``zoneOperations`` / ``globalOperations`` get, wait and (zonal) list.
- ``firewalls`` insert / get / patch (global operations).

Faults (``inject``) are matched by verb (``insert``, ``get``, ``list``, ``delete``, ``firewall``
or ``*``), zone (``*`` for any) and optionally a part of the instance's name, and either
answer the HTTP call with Google's error body
(``{"error": {"code", "message", "errors": [{"reason", ...}], "status"}}``) or, with
``on_operation=True``, accept an insert and make its Operation end with
``error.errors[].code`` and ``httpErrorStatusCode``: how ZONE_RESOURCE_POOL_EXHAUSTED reaches
a real client. ``hold_operations`` keeps zonal operations PENDING.
``preempt`` acts out a spot preemption with termination action STOP: the VM
turns TERMINATED with a ``lastStopTimestamp`` and a ``compute.instances.preempted`` operation
is on record. Every request is recorded (``requests``) with its decoded JSON body.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .gcp_api import HTTP_STATUS, ApiError, Fault, Recorded, matches, now, take

BASE = "https://www.googleapis.com/compute/v1"
_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    (m, re.compile(p + r"\Z"), name)
    for m, p, name in [
        ("POST", r"/compute/v1/projects/([^/]+)/zones/([^/]+)/instances", "instance_insert"),
        ("GET", r"/compute/v1/projects/([^/]+)/zones/([^/]+)/instances", "instance_list"),
        ("GET", r"/compute/v1/projects/([^/]+)/zones/([^/]+)/instances/([^/]+)", "instance_get"),
        ("DELETE", r"/compute/v1/projects/([^/]+)/zones/([^/]+)/instances/([^/]+)", "instance_delete"),
        ("GET", r"/compute/v1/projects/([^/]+)/aggregated/instances", "instance_aggregated"),
        ("GET", r"/compute/v1/projects/([^/]+)/zones/([^/]+)/operations", "zone_op_list"),
        ("GET", r"/compute/v1/projects/([^/]+)/zones/([^/]+)/operations/([^/]+)", "zone_op_get"),
        ("POST", r"/compute/v1/projects/([^/]+)/zones/([^/]+)/operations/([^/]+)/wait", "zone_op_get"),
        ("GET", r"/compute/v1/projects/([^/]+)/global/operations/([^/]+)", "global_op_get"),
        ("POST", r"/compute/v1/projects/([^/]+)/global/operations/([^/]+)/wait", "global_op_get"),
        ("POST", r"/compute/v1/projects/([^/]+)/global/firewalls", "firewall_insert"),
        ("GET", r"/compute/v1/projects/([^/]+)/global/firewalls/([^/]+)", "firewall_get"),
        ("PATCH", r"/compute/v1/projects/([^/]+)/global/firewalls/([^/]+)", "firewall_patch"),
        ("DELETE", r"/compute/v1/projects/([^/]+)/global/firewalls/([^/]+)", "firewall_delete"),
    ]
]
# Which fault verb each route answers to, and whether the route is zonal (its 2nd group).
_VERBS = {
    "instance_insert": "insert",
    "instance_list": "list",
    "instance_get": "get",
    "instance_delete": "delete",
    "instance_aggregated": "list",
    "firewall_insert": "firewall",
    "firewall_get": "firewall",
    "firewall_patch": "firewall",
    "firewall_delete": "firewall",
}


class FakeCompute:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.instances: dict[tuple[str, str], dict[str, Any]] = {}
        self.firewalls: dict[str, dict[str, Any]] = {}
        self.operations: dict[str, dict[str, Any]] = {}
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self._ids = itertools.count(5_000_000_000_000_000_001)
        self._ips = itertools.count(2)
        # True: zonal operations stay PENDING however often they are polled (a stuck launch).
        self.hold_operations = False
        self._server: ThreadingHTTPServer | None = None
        self.endpoint = ""

    # --- test controls ----------------------------------------------------------------------

    def inject(
        self, verb: str, zone: str, status: int, code: str, message: str = "",
        *, on_operation: bool = False, times: int | None = None, name: str = "",
    ) -> None:  # fmt: skip
        with self.lock:
            self.faults.append(Fault(verb, zone, status, code, message or code, on_operation, times, name))

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def preempt(self, zone: str, name: str) -> None:
        """A spot preemption with instanceTerminationAction STOP."""
        with self.lock:
            inst = self.instances[(zone, name)]
            inst["status"] = "TERMINATED"
            inst["lastStopTimestamp"] = now()
            self._operation("compute.instances.preempted", inst["selfLink"], inst["id"], zone, done=True)

    def begin_delete(self, zone: str, name: str) -> None:
        """A delete under way: the VM shows STOPPING and a PENDING delete operation is on record."""
        with self.lock:
            inst = self.instances[(zone, name)]
            inst["status"] = "STOPPING"
            self._operation("delete", inst["selfLink"], inst["id"], zone)

    def set_status(self, zone: str, name: str, status: str) -> None:
        with self.lock:
            self.instances[(zone, name)]["status"] = status

    def bodies(self, method: str, pattern: str) -> list[Any]:
        """Decoded bodies of the recorded requests whose path matches ``pattern``."""
        with self.lock:
            return [r.body for r in self.requests if r.method == method and re.search(pattern, r.path)]

    # --- server -----------------------------------------------------------------------------

    @contextmanager
    def serving(self) -> Iterator[FakeCompute]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = fake.dispatch(self.command, self.path, raw)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _handle

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="fake-gcp", daemon=True)
        thread.start()
        self._server = server
        self.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=10)

    def dispatch(self, method: str, target: str, raw: bytes) -> tuple[int, Any]:
        split = urlsplit(target)
        query = parse_qs(split.query)
        body = json.loads(raw) if raw else None
        with self.lock:
            self.requests.append(Recorded(method, split.path, query, body))
            for verb, pattern, name in _ROUTES:
                if verb != method or not (m := pattern.match(split.path)):
                    continue
                try:
                    fault = self._http_fault(name, m.groups(), body)
                    if fault is not None:
                        raise ApiError(fault.status, fault.code, fault.message)
                    handler = getattr(self, "_" + name)
                    return 200, handler(*m.groups(), query=query, body=body)
                except ApiError as exc:
                    return exc.status, exc.body()
            return 404, ApiError(404, "notFound", f"no route {method} {split.path}").body()

    def _http_fault(self, route: str, groups: tuple[str, ...], body: Any) -> Fault | None:
        verb = _VERBS.get(route)
        if verb is None:
            return None
        zonal = route.startswith("instance_") and route != "instance_aggregated"
        zone = groups[1] if zonal else "-"
        name = groups[2] if zonal and len(groups) > 2 else (body or {}).get("name", "") if zonal else ""
        return take(self.faults, verb, zone, on_operation=False, name=name)

    # --- operations -------------------------------------------------------------------------

    def _operation(
        self, kind: str, target: str, target_id: str, zone: str | None, *, done: bool = False,
        error: Fault | None = None, on_done: tuple[str, Any] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        op_id = str(next(self._ids))
        name = f"operation-{op_id}"
        where = f"{BASE}/projects/p/zones/{zone}" if zone else f"{BASE}/projects/p/global"
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": op_id,
            "name": name,
            "operationType": kind,
            "targetLink": target,
            "targetId": target_id,
            "status": "DONE" if done else "PENDING",
            "progress": 100 if done else 0,
            "insertTime": now(),
            "selfLink": f"{where}/operations/{name}",
        }
        if zone:
            op["zone"] = where
        if error is not None:
            op["_error"] = error
        if on_done is not None:
            op["_on_done"] = on_done
        self.operations[name] = op
        return self._public(op)

    @staticmethod
    def _public(op: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in op.items() if not k.startswith("_")}

    def _finish(self, op: dict[str, Any]) -> dict[str, Any]:
        if op["status"] != "DONE" and not (self.hold_operations and "zone" in op):
            op["status"], op["progress"], op["endTime"] = "DONE", 100, now()
            fault: Fault | None = op.pop("_error", None)
            if fault is not None:
                op["error"] = {"errors": [{"code": fault.code, "message": fault.message}]}
                op["httpErrorStatusCode"] = fault.status
                op["httpErrorMessage"] = HTTP_STATUS.get(fault.status, "ERROR").replace("_", " ")
            effect = op.pop("_on_done", None)
            if effect is not None and effect[0] == "running" and effect[1] in self.instances:
                inst = self.instances[effect[1]]
                if inst["status"] in ("PROVISIONING", "STAGING"):
                    inst["status"] = "RUNNING"
        return self._public(op)

    def _zone_op_get(self, project: str, zone: str, name: str, **_: Any) -> dict[str, Any]:
        op = self.operations.get(name)
        if op is None or not op.get("zone", "").endswith(f"/zones/{zone}"):
            raise ApiError(
                404,
                "notFound",
                f"The resource 'projects/{project}/zones/{zone}/operations/{name}' was not found",
            )
        return self._finish(op)

    def _global_op_get(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        op = self.operations.get(name)
        if op is None or "zone" in op:
            raise ApiError(
                404, "notFound", f"The resource 'projects/{project}/global/operations/{name}' was not found"
            )
        return self._finish(op)

    def _zone_op_list(
        self, project: str, zone: str, *, query: dict[str, list[str]], **_: Any
    ) -> dict[str, Any]:
        flt = query.get("filter", [""])[0]
        items = [
            self._public(op)
            for op in self.operations.values()
            if op.get("zone", "").endswith(f"/zones/{zone}") and matches(flt, op)
        ]
        return {
            "kind": "compute#operationList",
            "id": f"projects/{project}/zones/{zone}/operations",
            "items": items,
        }

    # --- instances --------------------------------------------------------------------------

    def _instance_insert(self, project: str, zone: str, *, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        name = body.get("name", "")
        if not re.fullmatch(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?", name):
            raise ApiError(400, "invalid", f"Invalid value for field 'resource.name': '{name}'.")
        if (zone, name) in self.instances:
            raise ApiError(
                409,
                "alreadyExists",
                f"The resource 'projects/{project}/zones/{zone}/instances/{name}' already exists",
            )
        self_link = f"{BASE}/projects/{project}/zones/{zone}/instances/{name}"
        fault = take(self.faults, "insert", zone, on_operation=True, name=name)
        if fault is not None:  # accepted, then the operation fails: no instance is created
            return self._operation("insert", self_link, str(next(self._ids)), zone, error=fault)
        inst = json.loads(json.dumps(body))
        inst_id = str(next(self._ids))
        ip = next(self._ips)
        for nic_index, nic in enumerate(inst.get("networkInterfaces", [])):
            nic["networkIP"] = f"10.128.0.{ip}"
            nic["name"] = f"nic{nic_index}"
            for access in nic.get("accessConfigs", []):
                access["natIP"] = f"203.0.113.{ip}"
        inst.update(
            kind="compute#instance", id=inst_id, status="STAGING", selfLink=self_link,
            zone=f"{BASE}/projects/{project}/zones/{zone}",
            machineType=f"{BASE}/projects/{project}/{body.get('machineType', '')}",
            creationTimestamp=now(),
        )  # fmt: skip
        inst.setdefault("tags", {})["fingerprint"] = "42WmSpB8rSM="
        inst.setdefault("metadata", {}).update(kind="compute#metadata", fingerprint="Yv0RBH8SAhM=")
        for acc in inst.get("guestAccelerators", []):
            acc["acceleratorType"] = f"{BASE}/projects/{project}/{acc['acceleratorType']}"
        self.instances[(zone, name)] = inst
        return self._operation("insert", self_link, inst_id, zone, on_done=("running", (zone, name)))

    def _find(self, project: str, zone: str, name: str) -> dict[str, Any]:
        inst = self.instances.get((zone, name))
        if inst is None:
            raise ApiError(
                404,
                "notFound",
                f"The resource 'projects/{project}/zones/{zone}/instances/{name}' was not found",
            )
        return inst

    def _instance_get(self, project: str, zone: str, name: str, **_: Any) -> dict[str, Any]:
        return self._find(project, zone, name)

    def _instance_delete(self, project: str, zone: str, name: str, **_: Any) -> dict[str, Any]:
        inst = self._find(project, zone, name)
        del self.instances[(zone, name)]
        return self._operation("delete", inst["selfLink"], inst["id"], zone)

    def _instance_list(
        self, project: str, zone: str, *, query: dict[str, list[str]], **_: Any
    ) -> dict[str, Any]:
        flt = query.get("filter", [""])[0]
        items = [i for (z, _n), i in self.instances.items() if z == zone and matches(flt, i)]
        return {
            "kind": "compute#instanceList",
            "id": f"projects/{project}/zones/{zone}/instances",
            "items": items,
        }

    def _instance_aggregated(self, project: str, *, query: dict[str, list[str]], **_: Any) -> dict[str, Any]:
        flt = query.get("filter", [""])[0]
        zones: dict[str, list[dict[str, Any]]] = {}
        for (zone, _name), inst in sorted(self.instances.items()):
            if matches(flt, inst):
                zones.setdefault(f"zones/{zone}", []).append(inst)
        items: dict[str, Any] = {key: {"instances": found} for key, found in zones.items()}
        empty = "There are no results for scope 'zones/europe-west4-a' on this page."
        items["zones/europe-west4-a"] = {"warning": {"code": "NO_RESULTS_ON_PAGE", "message": empty}}
        return {
            "kind": "compute#instanceAggregatedList",
            "id": f"projects/{project}/aggregated/instances",
            "items": items,
        }

    # --- firewalls --------------------------------------------------------------------------

    def _firewall_insert(self, project: str, *, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        name = body.get("name", "")
        if name in self.firewalls:
            raise ApiError(
                409,
                "alreadyExists",
                f"The resource 'projects/{project}/global/firewalls/{name}' already exists",
            )
        link = f"{BASE}/projects/{project}/global/firewalls/{name}"
        rule = {**body, "kind": "compute#firewall", "id": str(next(self._ids)), "selfLink": link}
        rule["network"] = f"{BASE}/projects/{project}/{body.get('network', 'global/networks/default')}"
        self.firewalls[name] = rule
        return self._operation("insert", link, rule["id"], None)

    def _firewall_get(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        rule = self.firewalls.get(name)
        if rule is None:
            raise ApiError(
                404, "notFound", f"The resource 'projects/{project}/global/firewalls/{name}' was not found"
            )
        return rule

    def _firewall_patch(self, project: str, name: str, *, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        rule = self._firewall_get(project, name)
        rule.update({k: v for k, v in body.items() if k != "network"})
        return self._operation("patch", rule["selfLink"], rule["id"], None)

    def _firewall_delete(self, project: str, name: str, **_: Any) -> dict[str, Any]:
        rule = self._firewall_get(project, name)
        del self.firewalls[name]
        return self._operation("delete", rule["selfLink"], rule["id"], None)
