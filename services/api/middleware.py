"""ASGI guards in front of every route: body size (413) and body content type (415).

``BodyGuard`` answers before the application sees a byte of the body: at once when
``Content-Length`` is over the limit, else as soon as the streamed bytes pass it (the body is
buffered up to the limit, then replayed). A request with a body must say it is JSON or YAML:
a browser's cross-site "simple" request (text/plain, form data) is refused here, whoever sent it.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BODY_TYPES = frozenset(
    {"application/json", "application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def _refuse(send: Send, status: int, code: str, message: str) -> None:
    body = json.dumps({"error": code, "message": message, "issues": []}).encode()
    await send({
        "type": "http.response.start", "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close")],
    })  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class BodyGuard:
    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    def _too_large(self, size: str) -> str:
        return (
            f"the request body is {size} bytes; the API takes at most {self.max_body_bytes} "
            "(STRATUS_API_MAX_BODY_BYTES)"
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        if length is not None:
            if not length.isdigit():
                await _refuse(send, 400, "bad_request", f"Content-Length {length!r} is not a number")
                return
            if int(length) > self.max_body_bytes:
                await _refuse(send, 413, "too_large", self._too_large(length))
                return
        if not chunked and (length is None or int(length) == 0):
            await self.app(scope, receive, send)
            return
        ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if ctype not in BODY_TYPES:
            shown = repr(ctype) if ctype else "none"
            await _refuse(
                send, 415, "unsupported_media_type",
                f"a request body needs Content-Type application/json or application/yaml (got {shown})",
            )  # fmt: skip
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _refuse(send, 413, "too_large", self._too_large(f"more than {self.max_body_bytes}"))
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # http.disconnect, for streaming responses

    return replayed
