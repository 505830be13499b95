"""A small synchronous client of the Stratus HTTP API (what the CLI uses)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote

import httpx

API_PREFIX = "/v1"


class ClientError(Exception):
    """Base of the client's errors; ``str()`` is a message fit for a terminal."""


class ApiUnreachable(ClientError):
    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"cannot reach the Stratus API at {url} ({reason}).\n"
            "hint: start the local stack with `stratus local up`, or point STRATUS_API_URL (or --api-url) "
            "at a running API."
        )


class ApiRequestError(ClientError):
    """The API answered with an error: ``status``, stable ``code``, ``message`` and ``issues``."""

    def __init__(self, status: int, code: str, message: str, issues: list[dict[str, Any]]) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.issues = issues
        super().__init__(message)


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() or not str(exc) else str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__


def _error_from(response: httpx.Response) -> ApiRequestError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return ApiRequestError(
            response.status_code,
            str(body.get("error", "error")),
            body["message"],
            list(body.get("issues") or []),
        )
    text = response.text.strip()[:500] or response.reason_phrase
    return ApiRequestError(
        response.status_code, "error", f"the API answered {response.status_code}: {text}", []
    )


class StratusClient:
    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, transport=transport, headers=headers
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> StratusClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _request(
        self, method: str, path: str, *, params: Mapping[str, Any] | None = None, body: Any = None
    ) -> Any:
        try:
            response = self._http.request(method, API_PREFIX + path, params=_params(params), json=body)
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.base_url, _reason(exc)) from exc
        if response.status_code >= 400:
            raise _error_from(response)
        return response.json()

    def _stream_lines(self, path: str, params: Mapping[str, Any] | None) -> Iterator[str]:
        return self._stream(path, params, lines=True)

    def _stream_text(self, path: str, params: Mapping[str, Any] | None) -> Iterator[str]:
        return self._stream(path, params, lines=False)

    def _stream(self, path: str, params: Mapping[str, Any] | None, *, lines: bool) -> Iterator[str]:
        try:
            with self._http.stream(
                "GET", API_PREFIX + path, params=_params(params), timeout=httpx.Timeout(10.0, read=None)
            ) as response:
                if response.status_code >= 400:
                    response.read()
                    raise _error_from(response)
                yield from (response.iter_lines() if lines else response.iter_text())
        except httpx.TransportError as exc:
            raise ApiUnreachable(self.base_url, _reason(exc)) from exc

    # ------------------------------------------------------------------ services

    def list_services(
        self, names: list[str] | None = None, *, include_terminated: bool = False
    ) -> dict[str, Any]:
        params = {"name": names or None, "all": include_terminated or None}
        result: dict[str, Any] = self._request("GET", "/services", params=params)
        return result

    def get_service(self, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", f"/services/{_seg(name)}")
        return result

    def create_service(
        self, *, yaml_text: str, name: str | None, env: Mapping[str, str], dry_run: bool,
        tls: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        body = {"yaml": yaml_text, "name": name, "env": dict(env), "dry_run": dry_run, **(tls or {})}
        result: dict[str, Any] = self._request("POST", "/services", body=body)
        return result

    def update_service(
        self, name: str, *, yaml_text: str, env: Mapping[str, str], mode: str, dry_run: bool,
        tls: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        body = {"yaml": yaml_text, "env": dict(env), "mode": mode, "dry_run": dry_run, **(tls or {})}
        result: dict[str, Any] = self._request("POST", f"/services/{_seg(name)}/versions", body=body)
        return result

    def delete_service(self, name: str, *, purge: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self._request("DELETE", f"/services/{_seg(name)}", params={"purge": purge})
        return result

    def terminate_replica(self, name: str, replica_id: int, *, purge: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "DELETE", f"/services/{_seg(name)}/replicas/{replica_id}", params={"purge": purge}
        )
        return result

    def preempt_replica(self, name: str, replica_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._request(
            "POST", f"/services/{_seg(name)}/replicas/{replica_id}/preempt"
        )
        return result

    # ------------------------------------------------------------------ logs

    def replica_logs(
        self, name: str, replica_id: int, *, follow: bool, tail: int | None = None
    ) -> Iterator[str]:
        params = {"follow": follow, "tail": tail}
        return self._stream_text(f"/services/{_seg(name)}/replicas/{replica_id}/logs", params)

    def service_component_logs(
        self, name: str, component: str, *, follow: bool, tail: int | None = None
    ) -> Iterator[str]:
        params = {"follow": follow, "tail": tail}
        return self._stream_text(f"/services/{_seg(name)}/logs/{_seg(component)}", params)

    def component_logs(self, component: str, *, follow: bool, tail: int | None = None) -> Iterator[str]:
        return self._stream_text(f"/components/{_seg(component)}/logs", {"follow": follow, "tail": tail})

    # ------------------------------------------------------------------ events

    def events(self, **params: Any) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/events", params=params)
        return result

    def stream_events(self, **params: Any) -> Iterator[dict[str, Any]]:
        for line in self._stream_lines("/events/stream", params):
            if line.strip():
                item: dict[str, Any] = json.loads(line)
                yield item


def _seg(value: str) -> str:
    return quote(value, safe="")


def _params(params: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Drop unset values; booleans as ``true``/``false`` (what FastAPI reads)."""
    if not params:
        return None
    out: dict[str, Any] = {}
    for key, value in params.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else value
    return out


class TokenClient:
    """``/v1/auth``: API tokens (what ``stratus auth`` uses)."""

    def __init__(self, client: StratusClient) -> None:
        self._client = client

    def whoami(self) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request("GET", "/auth/whoami")
        return result

    def create(self, name: str, role: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(
            "POST", "/auth/tokens", body={"name": name, "role": role}
        )
        return result

    def list(self, *, include_revoked: bool = False) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._client._request(
            "GET", "/auth/tokens", params={"all": include_revoked or None}
        )
        return result

    def revoke(self, token_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request("DELETE", f"/auth/tokens/{token_id}")
        return result
