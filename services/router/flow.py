"""Constants of the request path: exchange states, response framing, pause reasons, limits."""

from __future__ import annotations

# Exchange states
NEW = 0  # head parsed, not dispatched yet (pipelined behind another request)
HELD = 1  # waiting for a ready replica (hold-when-empty)
CONNECTING = 2  # opening an upstream connection
ATTACHED = 3  # bound to an upstream connection
DONE = 4

# Client-side body framing of the response
C_NONE = 0
C_LENGTH = 1
C_CHUNKED = 2
C_RAW = 3  # HTTP/1.0 client, unknown length: raw bytes, then close

# Reasons for pausing reads from the client (bit set)
PAUSE_UPSTREAM = 1  # upstream write buffer full
PAUSE_PENDING = 2  # too many request bytes buffered with no upstream attached
PAUSE_QUEUE = 4  # too many pipelined requests

PENDING_HIGH = 256 * 1024
REPLAY_LIMIT = 1024 * 1024
DISCARD_LIMIT = 1024 * 1024  # request body read and dropped after an early error answer
MAX_PIPELINED = 16


IDEMPOTENT_METHODS = frozenset({b"GET", b"HEAD", b"OPTIONS"})
