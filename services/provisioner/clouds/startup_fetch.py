"""Fetches a replica's secrets at boot: runs ON a cloud instance (python3, standard library only).

The startup script runs ``python3 startup_fetch.py URL ROOT`` with the one-time bootstrap token
in the environment variable STRATUS_BOOTSTRAP_TOKEN. It POSTs to the API's ``/v1/bootstrap``
and writes ``ROOT/secrets.env`` (mode 0600, ``export NAME='value'`` lines for bash to source)
and ``ROOT/log_token`` (0600). Values are never printed. Connection failures, timeouts, a
connection dropped mid-answer and 5xx answers are retried a bounded number of times; 4xx answers
(token used, expired or unknown) are final. Every attempt carries the same random request id
(kept in ``ROOT/bootstrap_request``, 0600, so a rerun of the script reuses it): when an answer is
lost after the API used the token, the API answers this requester again (``libs.bootstrap``).

A node of a multi-node replica may boot before the cloud has created its peers: the API answers
503 ``bootstrap_cluster_not_ready`` with ``Retry-After`` until the provisioner has recorded every
node's IP. That wait does not count against the attempts; it lasts at most ``CLUSTER_WAIT_SECONDS``
(the token's default TTL: after it the API says 410 anyway). The answer's rank, node count and
IPs go to ``ROOT/node.env`` (``SKYPILOT_NODE_RANK``, ``SKYPILOT_NUM_NODES``, ``SKYPILOT_NODE_IPS``:
newline-separated, head first, as SkyPilot sets them), which the runner sources last.

Exit codes: 0 done, 2 the API refused the token, 3 gave up after the retries.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import re
import secrets
import sys
import time
import urllib.error
import urllib.request

ATTEMPTS = 30
DELAY_SECONDS = 2.0
TIMEOUT_SECONDS = 10.0
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
CLUSTER_NOT_READY = "bootstrap_cluster_not_ready"
CLUSTER_WAIT_SECONDS = 1800.0
MAX_RETRY_AFTER_SECONDS = 30.0


def shell_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def write_private(path: str, text: str) -> None:
    fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


def request_id(root: str) -> str:
    """This instance's random request id: made once, then read back (a rerun keeps it)."""
    path = os.path.join(root, "bootstrap_request")
    try:
        with open(path) as f:
            known = f.read().strip()
        if known:
            return known
    except OSError:
        pass
    made = secrets.token_urlsafe(24)
    write_private(path, made)
    return made


def fetch(
    url: str,
    token: str,
    rid: str = "",
    *,
    attempts: int = ATTEMPTS,
    delay: float = DELAY_SECONDS,
    timeout: float = TIMEOUT_SECONDS,
    cluster_wait: float = CLUSTER_WAIT_SECONDS,
    max_retry_after: float = MAX_RETRY_AFTER_SECONDS,
) -> dict[str, object] | int:
    """The answer's JSON, or an exit code. ``rid``: the request id every attempt sends."""
    body = json.dumps({"request_id": rid} if rid else {}).encode()
    reason = "no attempt"
    waited_since = time.monotonic()
    attempt = 0
    while attempt < attempts:
        attempt += 1
        req = urllib.request.Request(
            url, data=body, method="POST",
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                answer: dict[str, object] = json.loads(resp.read().decode())
                return answer
        except urllib.error.HTTPError as exc:
            pause = cluster_pause(exc, max_retry_after)
            if pause is not None:
                if time.monotonic() - waited_since + pause > cluster_wait:
                    print(
                        f"stratus: the other nodes did not come up in {cluster_wait:.0f} s", file=sys.stderr
                    )
                    return 3
                print(f"stratus: waiting for the other nodes of this replica ({pause:g} s)", file=sys.stderr)
                attempt -= 1  # not a failed attempt: the cluster is still being created
                time.sleep(pause)
                continue
            if exc.code < 500:
                print(f"stratus: bootstrap refused ({exc.code}): the token is used, expired or unknown",
                      file=sys.stderr)  # fmt: skip
                return 2
            reason = f"HTTP {exc.code}"
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            # Timed out, refused, or the connection dropped mid-answer: the API may have used the
            # token already, and answers the same request id again.
            reason = type(exc).__name__
        if attempt == attempts:
            break
        print(f"stratus: bootstrap attempt {attempt}/{attempts} failed ({reason}); retrying", file=sys.stderr)
        time.sleep(delay)
    print(f"stratus: bootstrap gave up after {attempts} attempts ({reason})", file=sys.stderr)
    return 3


def cluster_pause(exc: urllib.error.HTTPError, cap: float) -> float | None:
    """Seconds to wait when the API says the replica's other nodes are not created yet, else None."""
    if exc.code != 503:
        return None
    try:
        code = json.loads(exc.read().decode()).get("error")
    except (ValueError, AttributeError, OSError):
        return None
    if code != CLUSTER_NOT_READY:
        return None
    try:
        after = float(exc.headers.get("Retry-After") or DELAY_SECONDS)
    except ValueError:
        after = DELAY_SECONDS
    return max(0.0, min(after, cap))


def node_env(answer: dict[str, object]) -> str | None:
    """``node.env``'s text for a multi-node replica's node ("" for a single node), None if invalid."""
    raw = answer.get("node_ips") or []
    if not isinstance(raw, list):
        return None
    try:
        rank, count = int(str(answer.get("node_rank", 0))), int(str(answer.get("num_nodes", 1)))
        ips = [str(ipaddress.ip_address(str(ip))) for ip in raw]
    except ValueError:
        return None
    if count <= 1:
        return ""
    if len(ips) != count or not 0 <= rank < count:
        return None
    values = {
        "SKYPILOT_NODE_RANK": str(rank),
        "SKYPILOT_NUM_NODES": str(count),
        "SKYPILOT_NODE_IPS": "\n".join(ips),
    }
    return "".join(f"export {k}={shell_quote(v)}\n" for k, v in values.items())


def main(argv: list[str]) -> int:
    url, root = argv[1], argv[2]
    token = os.environ.get("STRATUS_BOOTSTRAP_TOKEN", "")
    answer = fetch(url, token, request_id(root))
    if isinstance(answer, int):
        return answer
    envs = answer.get("envs") or {}
    assert isinstance(envs, dict)
    bad = [str(name) for name in envs if not NAME.match(str(name))]
    if bad:
        print(f"stratus: bootstrap answer has invalid env names {bad}", file=sys.stderr)
        return 2
    nodes = node_env(answer)
    if nodes is None:
        print("stratus: bootstrap answer has an invalid node rank, count or IP list", file=sys.stderr)
        return 2
    if nodes:
        write_private(os.path.join(root, "node.env"), nodes)
    lines = [f"export {name}={shell_quote(str(value))}\n" for name, value in envs.items()]
    write_private(os.path.join(root, "secrets.env"), "".join(lines))
    write_private(os.path.join(root, "log_token"), str(answer.get("log_token") or ""))
    print(f"stratus: bootstrap fetched {len(lines)} secret env(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
