"""HTTP/1.1 helpers shared by both sides of the proxy (pure functions and constants).

Header policy (RFC 9110 §7.6.1): the hop-by-hop fields ``Connection``,
``Keep-Alive``, ``Proxy-Connection``, ``TE``, ``Trailer``, ``Transfer-Encoding``
and ``Upgrade``, plus every field named in ``Connection``, are consumed by the
proxy and never forwarded. Message framing is re-established per hop:
a chunked body is forwarded chunked (re-chunked), a ``Content-Length`` body
keeps its length, and a read-until-close response becomes chunked for
HTTP/1.1 clients (so their connection stays alive) or stays close-delimited
for HTTP/1.0 clients.
"""

from __future__ import annotations

from http import HTTPStatus

import msgspec

CRLF = b"\r\n"
HEADER_SEP = b": "
LAST_CHUNK = b"0\r\n\r\n"

# Lower-case names of hop-by-hop fields (RFC 9110 §7.6.1).
HOP_BY_HOP: frozenset[bytes] = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)

# Fields the proxy looks at while copying a request head: every hop-by-hop
# field plus the ones it rewrites or needs for framing.
REQUEST_SPECIAL: frozenset[bytes] = HOP_BY_HOP | {b"x-forwarded-for", b"host", b"content-length", b"expect"}
# Fields the proxy looks at while copying a response head.
RESPONSE_SPECIAL: frozenset[bytes] = HOP_BY_HOP | {b"content-length"}
# Lengths of those names, to skip ``bytes.lower()`` for most other fields.
REQUEST_SPECIAL_LENGTHS: frozenset[int] = frozenset(len(n) for n in REQUEST_SPECIAL)
RESPONSE_SPECIAL_LENGTHS: frozenset[int] = frozenset(len(n) for n in RESPONSE_SPECIAL)

TE_CHUNKED = b"Transfer-Encoding: chunked\r\n"
CONN_CLOSE = b"Connection: close\r\n"
CONN_KEEP_ALIVE = b"Connection: keep-alive\r\n"


def connection_tokens(value: bytes) -> list[bytes]:
    """Lower-case tokens of a ``Connection`` field value."""
    return [t.strip().lower() for t in value.split(b",") if t.strip()]


def is_chunked(transfer_encoding: bytes) -> bool:
    """True when ``chunked`` is the final transfer coding (RFC 9112 §6.3)."""
    codings = transfer_encoding.lower().split(b",")
    return codings[-1].strip() == b"chunked"


def chunk(data: bytes) -> bytes:
    """``data`` framed as one chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


_STATUS_LINES: dict[tuple[int, bytes], bytes] = {}


def status_line(status: int, reason: bytes) -> bytes:
    """``HTTP/1.1 <status> <reason>\\r\\n`` (cached for the usual few pairs)."""
    key = (status, reason)
    line = _STATUS_LINES.get(key)
    if line is None:
        if not reason:
            try:
                reason = HTTPStatus(status).phrase.encode()
            except ValueError:
                reason = b"Unknown"
        line = b"HTTP/1.1 %d %b\r\n" % (status, reason)
        if len(_STATUS_LINES) < 512:
            _STATUS_LINES[key] = line
    return line


_JSON = msgspec.json.Encoder()


def json_response(
    status: int, payload: dict[str, object], *, close: bool, http11: bool = True, fields: bytes = b""
) -> bytes:
    """A complete response with a JSON body, as sent for proxy-generated errors (``fields``:
    extra header lines, each ending in CRLF)."""
    body = _JSON.encode(payload)
    conn = (CONN_CLOSE if http11 else b"") if close else (b"" if http11 else CONN_KEEP_ALIVE)
    return b"".join(
        (
            status_line(status, b""),
            b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body),
            b"Cache-Control: no-store\r\n",
            fields,
            conn,
            CRLF,
            body,
        )
    )


def error_response(
    status: int, message: str, *, close: bool, http11: bool = True, fields: bytes = b""
) -> bytes:
    """``{"error": message}`` with ``status``."""
    return json_response(status, {"error": message}, close=close, http11=http11, fields=fields)


def drop_named_fields(parts: list[bytes], names: set[bytes], start: int) -> list[bytes]:
    """Remove ``name: value`` fields listed in ``names`` (lower-case) from a head being built.

    ``parts`` holds groups of four items ``[name, b": ", value, b"\\r\\n"]`` from
    index ``start`` on; items before ``start`` are kept as they are.
    """
    out = parts[:start]
    for i in range(start, len(parts), 4):
        if parts[i].lower() not in names:
            out.extend(parts[i : i + 4])
    return out
