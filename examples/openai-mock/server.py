"""An OpenAI-compatible replica without a model, for trying Stratus on a laptop.

It answers ``GET /v1/models``, ``POST /v1/chat/completions`` and ``POST /v1/completions``,
streaming a canned reply token by token (SSE, ``stream: true``) with a configurable delay,
as vLLM's server would. Standard library only, so the replica needs nothing installed.

    python server.py --port 8080 --model mock-llm --token-delay 0.05
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

REPLY = (
    "I am a mock language model served by Stratus replica {replica}. "
    "Every token you read was streamed through the load balancer as it was produced."
)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "openai-mock/1.0"
    model = "mock-llm"
    token_delay = 0.05

    def log_message(self, fmt: str, *args: object) -> None:  # quieter logs
        print(f"{self.address_string()} {fmt % args}", flush=True)

    def _json(self, status: int, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path in ("/v1/models", "/health", "/"):
            self._json(
                200,
                {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "stratus"}]},
            )
        else:
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b"{}"
        try:
            req = json.loads(raw or b"{}")
            if not isinstance(req, dict):
                raise ValueError("body must be a JSON object")
        except ValueError as exc:
            self._json(
                400, {"error": {"message": f"invalid JSON body: {exc}", "type": "invalid_request_error"}}
            )
            return
        if self.path not in ("/v1/chat/completions", "/v1/completions"):
            self._json(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        chat = self.path == "/v1/chat/completions"
        replica = os.environ.get("SKYPILOT_SERVE_REPLICA_ID", "?")
        tokens = [t + " " for t in REPLY.format(replica=replica).split(" ")]
        max_tokens = req.get("max_tokens")
        if isinstance(max_tokens, int) and max_tokens > 0:
            tokens = tokens[:max_tokens]
        rid = f"chatcmpl-{uuid.uuid4().hex[:20]}"
        created = int(time.time())
        if req.get("stream"):
            self._stream(rid, created, chat, tokens)
            return
        text = "".join(tokens).strip()
        choice = {"index": 0, "finish_reason": "stop"}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        self._json(
            200,
            {
                "id": rid,
                "object": "chat.completion" if chat else "text_completion",
                "created": created,
                "model": req.get("model", self.model),
                "choices": [choice],
                "usage": {
                    "prompt_tokens": 8,
                    "completion_tokens": len(tokens),
                    "total_tokens": 8 + len(tokens),
                },
            },
        )

    def _stream(self, rid: str, created: int, chat: bool, tokens: list[str]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def send(obj: object) -> None:
            data = f"data: {obj if isinstance(obj, str) else json.dumps(obj)}\n\n".encode()
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        kind = "chat.completion.chunk" if chat else "text_completion"
        for i, tok in enumerate(tokens):
            delta = (
                {"delta": {"role": "assistant", "content": tok} if i == 0 else {"content": tok}}
                if chat
                else {"text": tok}
            )
            send(
                {
                    "id": rid,
                    "object": kind,
                    "created": created,
                    "model": self.model,
                    "choices": [{"index": 0, "finish_reason": None, **delta}],
                }
            )
            time.sleep(self.token_delay)
        end = {"delta": {}} if chat else {"text": ""}
        send(
            {
                "id": rid,
                "object": kind,
                "created": created,
                "model": self.model,
                "choices": [{"index": 0, "finish_reason": "stop", **end}],
            }
        )
        send("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--model", default=os.environ.get("MODEL_NAME", "mock-llm"))
    parser.add_argument("--token-delay", type=float, default=float(os.environ.get("TOKEN_DELAY", "0.05")))
    args = parser.parse_args()
    Handler.model = args.model
    Handler.token_delay = args.token_delay
    ThreadingHTTPServer.daemon_threads = True
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    print(f"openai-mock serving {args.model} on {args.host}:{args.port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
