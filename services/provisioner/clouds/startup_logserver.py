"""The replica's log server: runs ON a cloud instance (python3, standard library only).

The startup script copies this file's source onto the instance and starts it next to the
workload. It serves the replica's setup+run log and its status to the control plane, only to
a caller presenting the per-replica log token (delivered with the bootstrap secrets, never in
metadata):

    GET /log?offset=N    the log's bytes from offset N (200; header X-Log-Size: its size now)
    GET /status          {"phase": "setup"|"running"|"exited", "exit_code": int|null}

Usage: python3 startup_logserver.py PORT ROOT   (ROOT holds replica.log, status, log_token)
"""

from __future__ import annotations

import hmac
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

MAX_CHUNK = 1 << 20


def read_status(root: str) -> dict[str, object]:
    try:
        with open(os.path.join(root, "status")) as f:
            words = f.read().split()
    except OSError:
        words = []
    phase = words[0] if words else "starting"
    code = int(words[1]) if len(words) > 1 and words[1].lstrip("-").isdigit() else None
    return {"phase": phase, "exit_code": code}


def make_handler(root: str, token: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass  # the access log would only add noise to the instance's console

        def _send(self, code: int, body: bytes, ctype: str, size: int | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if size is not None:
                self.send_header("X-Log-Size", str(size))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                self._send(401, b"missing or wrong log token\n", "text/plain")
                return
            url = urlsplit(self.path)
            if url.path == "/status":
                self._send(200, json.dumps(read_status(root)).encode(), "application/json")
            elif url.path == "/log":
                query = parse_qs(url.query)
                raw = (query.get("offset") or ["0"])[0]
                offset = int(raw) if raw.isdigit() else 0
                path = os.path.join(root, "replica.log")
                try:
                    size = os.path.getsize(path)
                    with open(path, "rb") as f:
                        f.seek(min(offset, size))
                        body = f.read(MAX_CHUNK)
                except OSError:
                    size, body = 0, b""
                self._send(200, body, "application/octet-stream", size)
            else:
                self._send(404, b"not found\n", "text/plain")

    return Handler


def main(argv: list[str]) -> int:
    port, root = int(argv[1]), argv[2]
    with open(os.path.join(root, "log_token")) as f:
        token = f.read().strip()
    server = ThreadingHTTPServer(("0.0.0.0", port), make_handler(root, token))
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
