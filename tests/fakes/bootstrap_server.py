"""A tiny stand-in for the API's ``POST /v1/bootstrap``: answers each token once, as the real one.

For tests of the startup script, which run it without the API. ``requests`` records what was
asked (token, and whether it was honoured) so a test can assert the token was used exactly once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class BootstrapFake:
    answers: dict[str, dict[str, object]]  # token -> {"envs": {...}, "log_token": "..."}
    used: set[str] = field(default_factory=set)
    requests: list[tuple[str, int]] = field(default_factory=list)  # (token, status)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, authorization: str) -> tuple[int, dict[str, object]]:
        token = authorization.removeprefix("Bearer ")
        with self.lock:
            if token not in self.answers:
                status, body = 401, {"detail": "unknown token"}
            elif token in self.used:
                status, body = 410, {"detail": "token already used"}
            else:
                self.used.add(token)
                status, body = 200, self.answers[token]
            self.requests.append((token, status))
        return status, body


@contextmanager
def bootstrap_server(answers: dict[str, dict[str, object]]) -> Iterator[BootstrapFake]:
    fake = BootstrapFake(answers=answers)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = fake.answer(self.headers.get("Authorization", ""))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}/v1/bootstrap"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
