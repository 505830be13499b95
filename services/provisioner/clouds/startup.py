"""The bash script a cloud instance boots with (AWS user-data, GCP startup-script, Azure custom data).

``render_startup_script(task)`` is pure apart from reading the task's workdir and file mounts
(``startup_bundle``); the script it returns contains no secret value. On the instance it:

1. writes two helper programs (``startup_fetch.py``, ``startup_logserver.py``: python3 standard
   library only) and the task's public envs under ``$STRATUS_ROOT`` (default /opt/stratus);
2. fetches the secret envs and the replica's log token from the API's ``POST /v1/bootstrap`` with
   the one-time token (bounded retries; values go to a 0600 file and are never echoed; ``set +x``).
   Skipped on a reboot when the file is already there (the token is dead by then);
3. starts, detached (its own session), the replica runner: the log server on ``log_port``
   (``Authorization: Bearer <log token>``; ``GET /log?offset=N``, ``GET /status``), then the
   workdir and file mounts unpacked from an inline tarball, then ``setup`` and ``run`` in the
   workdir with every env plus SKYPILOT_SERVE_REPLICA_ID, SKYPILOT_NUM_GPUS_PER_NODE and their
   STRATUS_* twins, their output appended to ``$STRATUS_ROOT/replica.log``; ``status`` says
   ``setup``, ``running`` or ``exited <code>``.

A node of a multi-node replica (``task.for_node(rank)``: its own one-time token) boots the same
script: the bootstrap answer also gives it its rank and every node's IP (``node.env``, sourced by
the runner last: SKYPILOT_NODE_RANK, SKYPILOT_NUM_NODES, SKYPILOT_NODE_IPS newline-separated, head
first). Every node runs setup and run, as SkyPilot does; probes and traffic go to the head only.

The control plane reads the log with the replica's log token: random per launch, stored
encrypted under the service's data key (``libs.bootstrap.log_token_for``), handed to the VM only
in the bootstrap answer. Inline files are bounded by the cloud's
user-data limit (``USER_DATA_LIMITS``): too big is a ``LaunchError`` naming the limit.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shlex
from pathlib import Path

from libs.bootstrap import BootstrapUrlError, check_url

from .base import LaunchTask
from .errors import LaunchError
from .startup_bundle import Bundle, build_bundle

DEFAULT_ROOT = "/opt/stratus"
DEFAULT_LOG_PORT = 8181
# Bytes of user data each cloud accepts (before any base64 encoding the API applies).
USER_DATA_LIMITS: dict[str, int] = {"aws": 16 * 1024, "gcp": 256 * 1024, "azure": 64 * 1024}
# Clouds whose boot agent (cloud-init) takes gzip-compressed user data: the limit counts those bytes.
GZIPPED_USER_DATA = frozenset({"aws"})
# Exit code the runner records when the bootstrap fetch failed (the workload never started).
BOOTSTRAP_FAILED = 97

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_HERE = Path(__file__).parent


def _heredoc(path: str, text: str, *, mode: str = "600") -> str:
    """Write ``text`` verbatim to ``path`` with a quoted heredoc whose delimiter is not in it."""
    tag = hashlib.sha256(text.encode()).hexdigest()[:12]
    delim = f"STRATUS_EOF_{tag}"
    if not text.endswith("\n"):
        text += "\n"
    return f"cat > {path} <<'{delim}'\n{text}{delim}\nchmod {mode} {path}\n"


def _exports(envs: dict[str, str]) -> str:
    bad = sorted(k for k in envs if not _NAME.match(k))
    if bad:
        raise LaunchError(f"env names {bad} are not valid shell variable names")
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in sorted(envs.items()))


def platform_envs(task: LaunchTask) -> dict[str, str]:
    """SkyPilot's variables (so its YAMLs run unchanged) and our twins; a multi-node replica's
    node IPs come with the bootstrap answer (``node.env``)."""
    gpus, replica = str(task.num_gpus), str(task.replica_id)
    return {
        "SKYPILOT_NUM_GPUS_PER_NODE": gpus,
        "SKYPILOT_SERVE_REPLICA_ID": replica,
        "SKYPILOT_NODE_RANK": str(task.node_rank),
        "SKYPILOT_NUM_NODES": str(task.num_nodes),
        "STRATUS_NUM_GPUS_PER_NODE": gpus,
        "STRATUS_REPLICA_ID": replica,
        "STRATUS_SERVE_REPLICA_ID": replica,
        "STRATUS_SERVICE_NAME": task.service,
        "STRATUS_SERVICE_VERSION": str(task.version),
    }


def _unpack(bundle: Bundle) -> str:
    if not bundle.tarball_b64:
        return ""
    lines = [
        'mkdir -p "$STRATUS_ROOT/bundle"',
        'base64 -d "$STRATUS_ROOT/bundle.tgz.b64" | tar -xzf - -C "$STRATUS_ROOT/bundle"',
    ]
    if bundle.has_workdir:
        lines.append('rm -rf "$WORKDIR" && mv "$STRATUS_ROOT/bundle/workdir" "$WORKDIR"')
    for m in bundle.mounts:
        dest = shlex.quote(m.destination)
        lines.append(f'cd "$HOME" && mkdir -p "$(dirname {dest})"')
        if m.is_dir:
            lines.append(f'mkdir -p {dest} && cp -a "$STRATUS_ROOT/bundle/mounts/{m.index}/." {dest}/')
        else:
            lines.append(f'cp -a "$STRATUS_ROOT/bundle/mounts/{m.index}" {dest}')
    lines.append('cd "$STRATUS_ROOT"')
    return "\n".join(lines) + "\n"


_RUNNER = """\
#!/bin/bash
# The replica runner (started detached by the startup script).
set +x
cd "$STRATUS_ROOT" || exit 1
echo $$ > replica.pid
LOG="$STRATUS_ROOT/replica.log"
if [ -s log_token ]; then
  nohup python3 "$STRATUS_ROOT/logserver.py" "$STRATUS_LOG_PORT" "$STRATUS_ROOT" >/dev/null 2>&1 &
fi
. "$STRATUS_ROOT/public.env"
[ -f "$STRATUS_ROOT/secrets.env" ] && . "$STRATUS_ROOT/secrets.env"
export SKYPILOT_NODE_IPS="$(hostname -I 2>/dev/null | awk '{print $1}')"
[ -f "$STRATUS_ROOT/node.env" ] && . "$STRATUS_ROOT/node.env"
echo unpack > status
. "$STRATUS_ROOT/unpack.sh" >>"$LOG" 2>&1
mkdir -p "$WORKDIR"
if [ -s "$STRATUS_ROOT/setup.sh" ]; then
  echo setup > status
  echo "stratus: running setup" >>"$LOG"
  (cd "$WORKDIR" && exec bash "$STRATUS_ROOT/setup.sh") >>"$LOG" 2>&1 </dev/null
  rc=$?
  if [ "$rc" != 0 ]; then
    echo "stratus: setup exited with code $rc" >>"$LOG"
    echo "exited $rc" > status
    exit 0
  fi
fi
echo running > status
echo "stratus: running run" >>"$LOG"
(cd "$WORKDIR" && exec bash "$STRATUS_ROOT/run.sh") >>"$LOG" 2>&1 </dev/null
rc=$?
echo "stratus: run exited with code $rc" >>"$LOG"
echo "exited $rc" > status
"""


def _bootstrap_step(task: LaunchTask) -> str:
    if task.bootstrap is None:
        return ": > secrets.env\n"
    token, url = shlex.quote(task.bootstrap.token), shlex.quote(task.bootstrap.url)
    nodes = " || [ ! -s node.env ]" if task.num_nodes > 1 else ""
    return (
        f"if [ ! -s secrets.env ] || [ ! -s log_token ]{nodes}; then\n"
        f'  STRATUS_BOOTSTRAP_TOKEN={token} python3 fetch.py {url} "$STRATUS_ROOT"\n'
        "  rc=$?\n"
        '  if [ "$rc" != 0 ]; then\n'
        f'    echo "stratus: bootstrap failed (exit $rc): the replica cannot start"\n'
        f'    echo "exited {BOOTSTRAP_FAILED}" > status\n'
        "    exit 1\n"
        "  fi\n"
        "fi\n"
    )


def render_startup_script(task: LaunchTask, *, log_port: int = DEFAULT_LOG_PORT, cloud: str = "") -> str:
    """The startup script for ``task``; ``cloud`` names the user-data limit to check (none if "")."""
    if task.run is None or not task.run.strip():
        raise LaunchError(f"service {task.service!r} has no run command")
    missing = sorted(set(task.secret_names) - set(task.envs))
    if missing:
        raise LaunchError(f"secret_names {missing} are not in the task's envs")
    if task.secret_names and task.bootstrap is None:
        raise LaunchError(
            f"service {task.service!r} has secret envs {sorted(task.secret_names)} but no bootstrap "
            "token: a cloud instance can only fetch secrets with one (the provisioner issues it)"
        )
    if task.num_nodes > 1 and task.bootstrap is None:
        raise LaunchError(
            f"service {task.service!r} has {task.num_nodes} nodes per replica but node {task.node_rank} has "
            "no bootstrap token: a node learns its peers' addresses with it (the provisioner issues one each)"
        )
    if task.bootstrap is not None:
        try:
            check_url(task.bootstrap.url)
        except BootstrapUrlError as exc:
            raise LaunchError(str(exc)) from exc
    _exports(task.envs)  # validates every name, the secret ones too
    public = {**task.public_envs(), **platform_envs(task)}
    bundle = build_bundle(task)
    fetch_src = (_HERE / "startup_fetch.py").read_text()
    server_src = (_HERE / "startup_logserver.py").read_text()
    parts = [
        "#!/bin/bash\n",
        f"# Stratus replica {task.replica_id} of {task.service!r} (version {task.version}"
        + (f", node {task.node_rank} of {task.num_nodes}" if task.num_nodes > 1 else "")
        + "). Generated;\n",
        "# no secret values here: they are fetched at boot with a one-time bootstrap token.\n",
        "set +x\n",
        "umask 077\n",
        f'export STRATUS_ROOT="${{STRATUS_ROOT:-{DEFAULT_ROOT}}}"\n',
        'export HOME="${HOME:-/root}"\n',
        'export WORKDIR="$STRATUS_ROOT/workdir"\n',
        f"export STRATUS_LOG_PORT={int(log_port)}\n",
        'mkdir -p "$STRATUS_ROOT" && cd "$STRATUS_ROOT" || exit 1\n',
        "echo boot > status\n",
        _heredoc("fetch.py", fetch_src),
        _heredoc("logserver.py", server_src),
        _heredoc("public.env", _exports(public) or ":\n"),
        _heredoc("setup.sh", task.setup or ""),
        _heredoc("run.sh", task.run),
        _heredoc("unpack.sh", _unpack(bundle) or ":\n"),
        _heredoc("bundle.tgz.b64", bundle.tarball_b64) if bundle.tarball_b64 else "",
        _heredoc("runner.sh", _RUNNER, mode="700"),
        _bootstrap_step(task),
        "# Detached in its own session: the cloud's startup mechanism need not wait for the workload.\n",
        'setsid nohup bash "$STRATUS_ROOT/runner.sh" >/dev/null 2>&1 < /dev/null &\n',
        'echo "stratus: replica runner started; log in $STRATUS_ROOT/replica.log"\n',
    ]
    script = "".join(parts)
    limit = USER_DATA_LIMITS.get(cloud)
    size = len(encode_user_data(script, cloud))
    if limit is not None and size > limit:
        raise LaunchError(
            f"the startup script for {task.service!r} is {size} bytes, over {cloud}'s user-data limit of "
            f"{limit} bytes: the workdir and file_mounts carried inline are too big (make them smaller, "
            "or fetch the data in setup)"
        )
    return script


def encode_user_data(script: str, cloud: str) -> bytes:
    """The bytes to hand ``cloud`` as user data: gzip where cloud-init unpacks it (AWS), else as is."""
    raw = script.encode()
    return gzip.compress(raw, compresslevel=9, mtime=0) if cloud in GZIPPED_USER_DATA else raw
