"""Emulated AWS for the provider tests: moto in server mode behind a small fault-injecting proxy.

boto3 talks real HTTP to the proxy (``endpoint_url``), which forwards every request to a
``ThreadedMotoServer`` on loopback, except that it can:

* answer a real EC2 error (XML, with the status AWS uses) to ``RunInstances`` in a given zone
  (``fail_run``), as AWS does when a zone has no capacity or the account hits a quota;
* report every instance address as 127.0.0.1 (``loopback_addresses``), so the control plane's
  probes of a "VM" stay on this machine;
* act out a spot interruption (``interrupt``): the instance is terminated in moto and, from then
  on, ``DescribeInstances`` shows the state reason AWS gives, ``Server.SpotInstanceTermination``.

``requests`` records each forwarded EC2 call's action and form parameters. moto keeps its state
per process, so each ``emulated_aws()`` resets it: use one at a time (a session's worth: moto
takes seconds to load a region the first time), with ``clear()`` between tests and names of
their own (services, instances) so one test's resources do not count in another's.
"""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from moto.server import ThreadedMotoServer

from libs.servers.ports import free_port

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15"
SPOT_REASON = ("Server.SpotInstanceTermination", "Server.SpotInstanceTermination: Spot instance termination")


@dataclass
class Fault:
    code: str
    message: str
    status: int
    zone: str | None  # None: every zone
    times: int | None  # None: every time


@dataclass
class EmulatedAws:
    endpoint_url: str
    moto_url: str
    faults: list[Fault] = field(default_factory=list)
    interrupted: set[str] = field(default_factory=set)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    session: Any = None  # a boto3 Session a test module may keep here to share
    # Report every instance address as 127.0.0.1, so what probes a "VM" stays on loopback.
    loopback_addresses: bool = False

    def fail_run(
        self,
        code: str,
        message: str = "",
        *,
        zone: str | None = None,
        status: int = 500,
        times: int | None = None,
    ) -> None:
        """Answer RunInstances (in ``zone``, or anywhere) with EC2 error ``code``."""
        with self.lock:
            self.faults.append(Fault(code, message or f"{code} (injected)", status, zone, times))

    def interrupt(self, ec2_id: str, region: str = "us-east-1") -> None:
        """Spot-interrupt ``ec2_id``: terminated, with AWS's spot state reason."""
        body = f"Action=TerminateInstances&Version=2016-11-15&InstanceId.1={ec2_id}".encode()
        forward(self.moto_url, "/", body, {"Content-Type": "application/x-www-form-urlencoded",
                                            "Authorization": _auth(region, "ec2")})  # fmt: skip
        with self.lock:
            self.interrupted.add(ec2_id)

    def clear(self) -> None:
        """Forget injected faults and recorded requests (moto's resources stay)."""
        with self.lock:
            self.faults.clear()
            self.interrupted.clear()
            self.requests.clear()

    def actions(self, name: str) -> list[dict[str, str]]:
        with self.lock:
            return [params for action, params in self.requests if action == name]

    def fault_for(self, action: str, params: dict[str, str]) -> Fault | None:
        if action != "RunInstances":
            return None
        zone = params.get("Placement.AvailabilityZone")
        with self.lock:
            for fault in self.faults:
                if fault.zone is not None and fault.zone != zone:
                    continue
                if fault.times is not None:
                    if fault.times <= 0:
                        continue
                    fault.times -= 1
                return fault
        return None

    def rewrite(self, action: str, body: bytes) -> bytes:
        if action not in ("DescribeInstances", "RunInstances"):
            return body
        if not self.interrupted and not self.loopback_addresses:
            return body
        root = ET.fromstring(body)
        uri = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else EC2_NS
        ET.register_namespace("", uri)
        ns = {"e": uri}
        if self.loopback_addresses:
            for el in root.iter():
                if el.tag.rsplit("}", 1)[-1] in ("ipAddress", "privateIpAddress", "publicIp") and el.text:
                    el.text = "127.0.0.1"
        for item in root.iterfind(".//e:instancesSet/e:item", ns):
            ident = item.findtext("e:instanceId", namespaces=ns)
            if ident not in self.interrupted:
                continue
            reason = item.find("e:stateReason", ns)
            if reason is None:
                reason = ET.SubElement(item, f"{{{uri}}}stateReason")
            for child in list(reason):
                reason.remove(child)
            ET.SubElement(reason, f"{{{uri}}}code").text = SPOT_REASON[0]
            ET.SubElement(reason, f"{{{uri}}}message").text = SPOT_REASON[1]
        return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _auth(region: str, service: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential=testing/20240101/{region}/{service}/aws4_request, "
        "SignedHeaders=host, Signature=0"
    )


def forward(base: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(
        base + path, data=body or None, headers=headers, method="POST" if body else "GET"
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def error_xml(code: str, message: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error>'
        f"<Code>{code}</Code><Message>{message}</Message></Error></Errors>"
        f"<RequestID>{uuid.uuid4()}</RequestID></Response>"
    ).encode()


@contextmanager
def emulated_aws() -> Iterator[EmulatedAws]:
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    aws = EmulatedAws(endpoint_url="", moto_url=f"http://{host}:{port}")
    # moto's backends are per process, not per server: start from a clean account.
    forward(aws.moto_url, "/moto-api/reset", b"{}", {"Content-Type": "application/json"})

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            params = {k: v[0] for k, v in parse_qs(body.decode(errors="replace")).items()}
            action = params.get("Action", "")
            if action and "ec2" in (self.headers.get("Authorization") or ""):
                with aws.lock:
                    aws.requests.append((action, params))
            fault = aws.fault_for(action, params)
            if fault is not None:
                status, headers, data = (
                    fault.status,
                    {"Content-Type": "text/xml"},
                    error_xml(fault.code, fault.message),
                )
            else:
                keep = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                status, headers, data = forward(aws.moto_url, self.path, body, keep)
                data = aws.rewrite(action, data)
            self.send_response(status)
            for k, v in headers.items():
                if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = _handle
        do_GET = _handle

    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    aws.endpoint_url = f"http://127.0.0.1:{proxy.server_address[1]}"
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    try:
        yield aws
    finally:
        proxy.shutdown()
        proxy.server_close()
        thread.join(5)
        moto.stop()
