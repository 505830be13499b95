"""The state and answers of the fake Azure Resource Manager (``azure_server`` serves it over HTTPS).

Resources live in memory keyed by their lower-cased ARM id. It answers, with real-shaped JSON:

- ``PUT`` of a resource group, virtual network, network security group, public IP, network
  interface, virtual machine (references to subnets, NSGs, IPs and NICs must exist, else 400
  ``InvalidResourceReference``). A VM is created asynchronously as ARM does (201 ``Creating`` plus
  an ``Azure-AsyncOperation`` header; the operation reports ``Succeeded`` when polled and the VM
  then runs, or ``InProgress`` while ``hold_operations`` is set); everything else synchronously
  (201 ``Succeeded``). Creating a VM creates its OS disk.
- ``GET`` of any stored resource (404 ``ResourceNotFound`` otherwise); a VM with
  ``$expand=instanceView`` carries its instance view; ``GET .../instanceView`` too.
- ``GET`` of subscription-wide lists (``/subscriptions/S/providers/NS/TYPE``) as ``{"value": [...]}``.
- ``DELETE`` (200, or 204 when the resource is absent, as ARM does); a VM's asynchronously (202
  and an operation; ``Deleting`` until it is polled; its OS disk goes with it); an NSG that a NIC
  still references is refused (400 ``InUseNetworkSecurityGroup``).

Faults (``inject``) are matched by method, resource type, region and optionally a part of the
resource's name, and answered with ARM's error
body ``{"error": {"code", "message"}}``; ``on_operation=True`` makes a VM PUT be accepted and its
async operation then fail with the code, which is how AllocationFailed reaches a real client.
``evict`` acts out a spot eviction with eviction policy Delete: the VM and its OS disk vanish, its
NIC (delete option Detach) stays. Every request is recorded (``requests``) with its decoded body.
"""

from __future__ import annotations

import datetime
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class Fault:
    status: int
    code: str
    message: str
    method: str = "PUT"
    resource_type: str = "virtualmachines"
    region: str | None = None
    on_operation: bool = False
    times: int | None = None  # None: every matching request
    name: str = ""  # only resources whose name contains this ("" for any)


@dataclass
class FakeArm:
    base_url: str = ""
    ca_path: str = ""
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    operations: dict[str, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    bugs: list[str] = field(default_factory=list)  # requests the fake could not handle
    hold_operations: bool = False  # VM creations stay InProgress while set
    _next_ip: int = 4

    # ---------------------------------------------------------------- test controls

    def inject(self, code: str, *, status: int = 409, message: str = "", **match: Any) -> Fault:
        fault = Fault(status=status, code=code, message=message or f"injected {code}", **match)
        fault.resource_type = fault.resource_type.lower()
        with self.lock:
            self.faults.append(fault)
        return fault

    def evict(self, vm_id: str) -> None:
        """Azure evicting a spot VM with eviction policy Delete: the VM and its disks go."""
        with self.lock:
            self._evict(vm_id.lower())

    def _evict(self, vm_id: str) -> None:
        vm = self.resources.pop(vm_id)
        disk = vm["properties"]["storageProfile"]["osDisk"].get("managedDisk", {}).get("id", "")
        self.resources.pop(disk.lower(), None)

    def set_power_state(self, vm_id: str, code: str) -> None:
        with self.lock:
            self.resources[vm_id.lower()]["_power"] = code

    def of_type(self, resource_type: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.resources.values() if r["type"].lower() == resource_type.lower()]

    def received(self, method: str, resource_type: str) -> list[Recorded]:
        """The requests of ``method`` on resources of ``resource_type`` ("virtualMachines", ...)."""
        wanted = resource_type.lower()
        return [
            r
            for r in self.requests
            if r.method == method and _resource_type([p for p in r.path.split("/") if p]) == wanted
        ]

    # ---------------------------------------------------------------- request handling

    def handle(
        self, method: str, path: str, query: dict[str, list[str]], body: Any
    ) -> tuple[int, Any, dict[str, str]]:
        with self.lock:
            self.requests.append(Recorded(method, path, query, body))
            parts = [p for p in path.split("/") if p]
            if "operations" in [p.lower() for p in parts] and method == "GET":
                return self._operation(parts[-1])
            rtype = _resource_type(parts)
            region = (body or {}).get("location") if method == "PUT" else None
            stored = self.resources.get(path.lower())
            if region is None and stored is not None:
                region = stored.get("location")
            fault = self._fault(method, rtype, region, parts[-1] if parts else "")
            if fault is not None and not fault.on_operation:
                return fault.status, error_body(fault.code, fault.message), {}
            if method == "PUT":
                return self._put(path, parts, rtype, body, fault)
            if method == "DELETE":
                if stored is not None and rtype == "virtualmachines":
                    return self._delete_vm(path, parts, stored)
                if stored is not None and rtype == "networksecuritygroups" and self._nsg_in_use(path):
                    message = f"Network security group {path} cannot be deleted because it is in use"
                    return 400, error_body("InUseNetworkSecurityGroup", message), {}
                if self.resources.pop(path.lower(), None) is None:
                    return 204, None, {}
                if rtype == "resourcegroups":  # ARM deletes what the group holds with it
                    for key in [k for k in self.resources if k.startswith(path.lower() + "/")]:
                        del self.resources[key]
                return 200, None, {}
            if method == "GET":
                return self._get(path, parts, query)
            if method == "POST" and parts[-1].lower() == "simulateeviction":
                vm_id = "/".join(["", *parts[:-1]]).lower()
                if vm_id not in self.resources:
                    return (
                        404,
                        error_body("ResourceNotFound", f"The Resource '{parts[-2]}' was not found."),
                        {},
                    )
                self._evict(vm_id)  # Azure takes up to some minutes; the fake evicts at once
                return 204, None, {}
            return 405, error_body("MethodNotAllowed", f"{method} is not supported here"), {}

    def _nsg_in_use(self, path: str) -> bool:
        """Whether a NIC still references the NSG (ARM refuses to delete it then)."""
        return any(
            r["type"] == "Microsoft.Network/networkInterfaces"
            and r["properties"].get("networkSecurityGroup", {}).get("id", "").lower() == path.lower()
            for r in self.resources.values()
        )

    def _fault(self, method: str, rtype: str, region: str | None, name: str) -> Fault | None:
        for fault in self.faults:
            if fault.method != method or fault.resource_type != rtype.lower() or fault.name not in name:
                continue
            if fault.region is not None and fault.region != region:
                continue
            if fault.times is not None:
                if fault.times <= 0:
                    continue
                fault.times -= 1
            return fault
        return None

    def _get(
        self, path: str, parts: list[str], query: dict[str, list[str]]
    ) -> tuple[int, Any, dict[str, str]]:
        if parts[-1].lower() == "instanceview":
            vm = self.resources.get("/".join(["", *parts[:-1]]).lower())
            if vm is None:
                return 404, error_body("ResourceNotFound", "The Resource was not found."), {}
            return 200, _instance_view(vm), {}
        if len(parts) == 3 and parts[2].lower() == "resourcegroups":
            groups = [
                _public(r)
                for r in self.resources.values()
                if r["type"] == "Microsoft.Resources/resourceGroups"
            ]
            return 200, {"value": groups}, {}
        if len(parts) == 5 and parts[2].lower() == "resourcegroups" and parts[4].lower() == "resources":
            prefix = "/".join(["", *parts[:4]]).lower() + "/"  # a group's top-level resources
            held = [
                _public(r)
                for k, r in self.resources.items()
                if k.startswith(prefix) and r["type"].count("/") == 1
            ]
            return 200, {"value": held}, {}
        if len(parts) == 5 and parts[2].lower() == "providers":  # a subscription-wide list
            rtype = f"{parts[3]}/{parts[4]}".lower()
            return (
                200,
                {"value": [_public(r) for r in self.resources.values() if r["type"].lower() == rtype]},
                {},
            )
        stored = self.resources.get(path.lower())
        if stored is None:
            name = parts[-1]
            return (
                404,
                error_body("ResourceNotFound", f"The Resource '{name}' under resource group was not found."),
                {},
            )
        out = _public(stored)
        if "instanceView" in query.get("$expand", []):
            out["properties"]["instanceView"] = _instance_view(stored)
        return 200, out, {}

    def _put(
        self, path: str, parts: list[str], rtype: str, body: Any, fault: Fault | None
    ) -> tuple[int, Any, dict[str, str]]:
        body = json.loads(json.dumps(body or {}))
        props = body.setdefault("properties", {})
        missing = [ref for ref in _references(rtype, props) if ref.lower() not in self.resources]
        if missing:
            return (
                400,
                error_body(
                    "InvalidResourceReference", f"Resource {missing[0]} referenced by {path} was not found."
                ),
                {},
            )
        existed = path.lower() in self.resources
        resource = {**body, "id": path, "name": parts[-1], "type": _arm_type(parts)}
        props["provisioningState"] = "Succeeded"
        if rtype == "resourcegroups":
            resource["type"] = "Microsoft.Resources/resourceGroups"
        elif rtype == "virtualnetworks":
            for subnet in props.get("subnets", []):
                subnet["id"] = f"{path}/subnets/{subnet['name']}"
                subnet.setdefault("properties", {})["provisioningState"] = "Succeeded"
                self.resources[subnet["id"].lower()] = {
                    **subnet,
                    "type": "Microsoft.Network/virtualNetworks/subnets",
                }
        elif rtype == "publicipaddresses":
            props["ipAddress"] = f"20.0.0.{self._next_ip}"
            self._next_ip += 1
        elif rtype == "networkinterfaces":
            for config in props.get("ipConfigurations", []):
                config.setdefault("properties", {})["privateIPAddress"] = f"10.100.0.{self._next_ip}"
                self._next_ip += 1
        elif rtype == "virtualmachines":
            return self._put_vm(path, parts, resource, fault)
        self.resources[path.lower()] = resource
        return (200 if existed else 201), _public(resource), {}

    def _put_vm(
        self, path: str, parts: list[str], vm: dict[str, Any], fault: Fault | None
    ) -> tuple[int, Any, dict[str, str]]:
        props = vm["properties"]
        props["vmId"] = str(uuid.uuid4())
        props["provisioningState"] = "Creating"
        props.get("osProfile", {}).pop("customData", None)  # ARM never returns custom data
        disk = props["storageProfile"].setdefault("osDisk", {})
        disk_id = (
            "/".join(parts[:4])
            + f"/providers/Microsoft.Compute/disks/{disk.get('name') or parts[-1] + '_OsDisk'}"
        )
        disk.setdefault("managedDisk", {})["id"] = "/" + disk_id
        self.resources["/" + disk_id.lower()] = {
            "id": "/" + disk_id,
            "name": disk_id.rsplit("/", 1)[-1],
            "type": "Microsoft.Compute/disks",
            "location": vm["location"],
            "properties": {"diskSizeGB": disk.get("diskSizeGB", 30)},
        }
        vm["_power"] = "PowerState/starting"
        self.resources[path.lower()] = vm
        op = str(uuid.uuid4())
        self.operations[op] = {"vm": path.lower(), "fault": fault, "kind": "create"}
        return 201, _public(vm), {"Azure-AsyncOperation": self._operation_url(parts, vm["location"], op)}

    def _delete_vm(self, path: str, parts: list[str], vm: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        """As ARM: 202 and an operation; the VM shows Deleting until the operation is polled."""
        vm["properties"]["provisioningState"] = "Deleting"
        op = str(uuid.uuid4())
        self.operations[op] = {"vm": path.lower(), "fault": None, "kind": "delete"}
        return 202, None, {"Azure-AsyncOperation": self._operation_url(parts, vm["location"], op)}

    def _operation_url(self, parts: list[str], location: str, op: str) -> str:
        where = f"/subscriptions/{parts[1]}/providers/Microsoft.Compute/locations/{location}"
        return f"{self.base_url}{where}/operations/{op}?api-version=2024-07-01"

    def _operation(self, op: str) -> tuple[int, Any, dict[str, str]]:
        entry = self.operations.get(op)
        if entry is None:
            return 404, error_body("NotFound", f"operation {op} not found"), {}
        now = datetime.datetime.now(datetime.UTC).isoformat()
        vm = self.resources.get(entry["vm"])
        fault: Fault | None = entry["fault"]
        if entry["kind"] == "delete":
            if vm is not None:  # the OS disk goes with it (its delete option is Delete)
                self._evict(entry["vm"])
            return 200, {"name": op, "status": "Succeeded", "startTime": now, "endTime": now}, {}
        if self.hold_operations:  # a creation that takes long; deleting the VM cancels it
            status = "InProgress" if vm is not None else "Canceled"
            return 200, {"name": op, "status": status, "startTime": now}, {}
        if fault is not None:
            if vm is not None:
                vm["properties"]["provisioningState"] = "Failed"
                vm["_power"] = "PowerState/stopped"
                vm["_failure"] = fault.code
            body = {
                "name": op,
                "status": "Failed",
                "startTime": now,
                "endTime": now,
                "error": {"code": fault.code, "message": fault.message},
            }
            return 200, body, {}
        if vm is not None:
            vm["properties"]["provisioningState"] = "Succeeded"
            vm["_power"] = "PowerState/running"
        return 200, {"name": op, "status": "Succeeded", "startTime": now, "endTime": now}, {}


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _resource_type(parts: list[str]) -> str:
    """The lower-cased type a path names: "virtualmachines" for a VM, its instance view or a list."""
    low = [p.lower() for p in parts]
    if "providers" not in low:
        return "resourcegroups" if len(low) in (3, 4) and low[2] == "resourcegroups" else ""
    rest = low[low.index("providers") + 2 :]
    if rest and rest[-1] == "instanceview":
        rest = rest[:-1]
    types = rest[0::2]
    return types[-1] if types else ""


def _arm_type(parts: list[str]) -> str:
    low = [p.lower() for p in parts]
    if "providers" not in low:
        return "Microsoft.Resources/resourceGroups"
    i = low.index("providers")
    return "/".join([parts[i + 1], *parts[i + 2 :: 2]])


def _references(rtype: str, props: dict[str, Any]) -> list[str]:
    refs: list[str] = []
    if rtype == "networkinterfaces":
        if "networkSecurityGroup" in props:
            refs.append(props["networkSecurityGroup"]["id"])
        for config in props.get("ipConfigurations", []):
            cprops = config.get("properties", {})
            refs += [cprops[k]["id"] for k in ("subnet", "publicIPAddress") if k in cprops]
    if rtype == "virtualmachines":
        refs += [nic["id"] for nic in props.get("networkProfile", {}).get("networkInterfaces", [])]
    return refs


def _public(resource: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(json.dumps({k: v for k, v in resource.items() if not k.startswith("_")}))
    return out


def _instance_view(vm: dict[str, Any]) -> dict[str, Any]:
    state = vm["properties"]["provisioningState"]
    code = f"ProvisioningState/{state.lower()}"
    if "_failure" in vm:
        code += f"/{vm['_failure']}"
    statuses = [{"code": code, "level": "Error" if "_failure" in vm else "Info", "displayStatus": state}]
    statuses.append({"code": vm["_power"], "level": "Info", "displayStatus": vm["_power"].split("/")[1]})
    return {"computerName": vm["name"], "osName": "ubuntu", "statuses": statuses}
