"""Pure parts: policies, upstream URLs, HTTP helpers, options."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import pytest

from services.router import EndpointOptions
from services.router.balance import LeastLoad, RoundRobin, make_policy
from services.router.errors import (
    ConfigError,
    InvalidUpstreamURL,
    NoReadyReplica,
    ProxyError,
    RouterError,
    UnknownPolicy,
    UpstreamTimeout,
)
from services.router.http1 import chunk, connection_tokens, error_response, is_chunked, status_line
from services.router.upstream import UpstreamAddress


@dataclass
class R:
    name: str
    in_flight: int = 0


def test_round_robin_cycles_and_survives_shrinking() -> None:
    rr = RoundRobin()
    cs = [R("a"), R("b"), R("c")]
    assert [rr.choose(cs).name for _ in range(7)] == list("abcabca")  # type: ignore[union-attr]
    assert rr.choose(cs[:1]) is cs[0]
    assert rr.choose([]) is None


def test_least_load_picks_minimum_and_rotates_ties() -> None:
    ll = LeastLoad()
    cs = [R("a", 2), R("b", 1), R("c", 1)]
    picks = Counter(ll.choose(cs).name for _ in range(10))  # type: ignore[union-attr]
    assert picks == {"b": 5, "c": 5}
    cs = [R("a", 3), R("b", 0), R("c", 5)]
    assert {ll.choose(cs).name for _ in range(5)} == {"b"}  # type: ignore[union-attr]
    assert ll.choose([]) is None
    assert ll.choose([R("x", 9)]).name == "x"  # type: ignore[union-attr]


def test_make_policy() -> None:
    assert make_policy(None).name == "least_load"
    assert make_policy("round_robin").name == "round_robin"
    with pytest.raises(UnknownPolicy):
        make_policy("fastest")


@pytest.mark.parametrize(
    ("url", "host", "port", "path", "host_header"),
    [
        ("http://127.0.0.1:8080", "127.0.0.1", 8080, None, b"127.0.0.1:8080"),
        ("http://replica.internal/", "replica.internal", 80, None, b"replica.internal:80"),
        ("http://[::1]:9000", "::1", 9000, None, b"[::1]:9000"),
        ("http+unix://%2Ftmp%2Fr%201.sock", None, 0, "/tmp/r 1.sock", b"localhost"),
    ],
)
def test_upstream_address_parse(
    url: str, host: str | None, port: int, path: str | None, host_header: bytes
) -> None:
    a = UpstreamAddress.parse(url)
    assert (a.host, a.port, a.unix_path, a.host_header, a.url) == (host, port, path, host_header, url)


@pytest.mark.parametrize(
    "url",
    ["https://x:1", "ftp://x", "http://x:1/prefix", "http://:80", "http+unix://", "x:1", "http://x:99999"],
)
def test_upstream_address_rejects(url: str) -> None:
    with pytest.raises(InvalidUpstreamURL):
        UpstreamAddress.parse(url)


def test_http1_helpers() -> None:
    assert connection_tokens(b"Keep-Alive, X-Foo ,") == [b"keep-alive", b"x-foo"]
    assert is_chunked(b"gzip, Chunked") and not is_chunked(b"chunked, gzip")
    assert chunk(b"hello") == b"5\r\nhello\r\n"
    assert status_line(200, b"OK") == b"HTTP/1.1 200 OK\r\n"
    assert status_line(503, b"") == b"HTTP/1.1 503 Service Unavailable\r\n"
    assert status_line(599, b"") == b"HTTP/1.1 599 Unknown\r\n"
    r = error_response(503, 'no "ready" replica', close=True)
    head, body = r.split(b"\r\n\r\n")
    assert b"Connection: close" in head and b"Content-Length: %d" % len(body) in head
    assert body == b'{"error":"no \\"ready\\" replica"}'
    r10 = error_response(502, "x", close=False, http11=False)
    assert b"Connection: keep-alive" in r10


def test_error_hierarchy() -> None:
    assert issubclass(NoReadyReplica, ProxyError) and issubclass(ProxyError, RouterError)
    assert NoReadyReplica("x").status == 503 and UpstreamTimeout("x").status == 504
    assert issubclass(ConfigError, ValueError)


def test_endpoint_options_validation() -> None:
    assert EndpointOptions().tick_interval() == 0.75  # upstream_idle_timeout 3 s / 4
    assert EndpointOptions(response_timeout=0.2).tick_interval() == pytest.approx(0.05)
    for bad in (
        {"max_attempts": 0},
        {"max_wait": 0},
        {"response_timeout": -1},
        {"connect_timeout": 0},
        {"client_idle_timeout": 0},
    ):
        with pytest.raises(ConfigError):
            EndpointOptions(**bad)  # type: ignore[arg-type]
