"""ASGI middleware: each HTTP request is a user action with an id of its own.

Appends made while serving the request carry the request id as causation and correlation id
(``libs.events.causation``), so the log can say which request caused which launch. The id is
returned in the ``X-Stratus-Correlation-Id`` response header for the caller to look up.
"""

from __future__ import annotations

import uuid

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from libs.events.causation import new_request_cause, using_cause

CORRELATION_HEADER = b"x-stratus-correlation-id"


class RequestCause:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((CORRELATION_HEADER, str(request_id).encode()))
                message = {**message, "headers": headers}
            await send(message)

        with using_cause(new_request_cause(request_id)):
            await self.app(scope, receive, send_with_id)
