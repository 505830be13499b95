"""Fetches a replica's secrets at boot: runs ON a cloud instance (python3, standard library only).

The startup script runs ``python3 startup_fetch.py URL ROOT`` with the one-time bootstrap token
in the environment variable STRATUS_BOOTSTRAP_TOKEN. It POSTs to the API's ``/v1/bootstrap``
and writes ``ROOT/secrets.env`` (mode 0600, ``export NAME='value'`` lines for bash to source)
and ``ROOT/log_token`` (0600). Values are never printed. Connection failures, timeouts, a
connection dropped mid-answer and 5xx answers are retried a bounded number of times; 4xx answers
(token used, expired or unknown) are final. Every attempt carries the same random request id
(kept in ``ROOT/bootstrap_request``, 0600, so a rerun of the script reuses it): when an answer is
lost after the API used the token, the API answers this requester again (``libs.bootstrap``).

Exit codes: 0 done, 2 the API refused the token, 3 gave up after the retries.
"""

from __future__ import annotations

import http.client
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
) -> dict[str, object] | int:
    """The answer's JSON, or an exit code. ``rid``: the request id every attempt sends."""
    body = json.dumps({"request_id": rid} if rid else {}).encode()
    reason = "no attempt"
    for attempt in range(1, attempts + 1):
        req = urllib.request.Request(
            url, data=body, method="POST",
            headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"},
        )  # fmt: skip
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                answer: dict[str, object] = json.loads(resp.read().decode())
                return answer
        except urllib.error.HTTPError as exc:
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
    lines = [f"export {name}={shell_quote(str(value))}\n" for name, value in envs.items()]
    write_private(os.path.join(root, "secrets.env"), "".join(lines))
    write_private(os.path.join(root, "log_token"), str(answer.get("log_token") or ""))
    print(f"stratus: bootstrap fetched {len(lines)} secret env(s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
