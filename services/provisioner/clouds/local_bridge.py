"""The unix-socket bridge of a userns-mode replica: a script, standard library only.

    python -E -s local_bridge.py <listening unix socket fd> <port>

Runs inside the replica's network namespace, where nothing outside can reach 127.0.0.1:<port>;
the socket it accepts on lives in the filesystem, which the namespace does not hide. Each
connection is piped both ways to the replica's port by two threads, half-closes included.
"""

from __future__ import annotations

import contextlib
import socket
import sys
import threading

_CONNECT_TIMEOUT = 5.0
_CHUNK = 65536


def _connect(port: int) -> socket.socket | None:
    # A server may listen on IPv4 or only on IPv6 loopback.
    for host in ("127.0.0.1", "::1"):
        with contextlib.suppress(OSError):
            return socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT)
    return None


def _pipe(src: socket.socket, dst: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := src.recv(_CHUNK):
            dst.sendall(data)
    with contextlib.suppress(OSError):
        dst.shutdown(socket.SHUT_WR)


def _serve_one(client: socket.socket, port: int) -> None:
    upstream = _connect(port)
    if upstream is None:  # not listening (yet): the caller sees a closed connection
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pipe, args=(upstream, client), daemon=True)
    back.start()
    _pipe(client, upstream)
    back.join()
    upstream.close()
    client.close()


def main(argv: list[str]) -> int:
    listener = socket.socket(fileno=int(argv[1]))
    port = int(argv[2])
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_serve_one, args=(client, port), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
