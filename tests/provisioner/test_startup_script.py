"""The cloud startup script, executed for real: bash runs it in a temp dir as an instance would
(STRATUS_ROOT and HOME pointed there), against a fake bootstrap endpoint; the service port,
the log server and the files it laid down are then checked from outside."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.servers.ports import free_port
from services.provisioner.clouds.base import Bootstrap, LaunchTask
from services.provisioner.clouds.errors import LaunchError
from services.provisioner.clouds.startup import USER_DATA_LIMITS, encode_user_data, render_startup_script
from tests.fakes.bootstrap_server import bootstrap_server

SECRET = "hf_s3cr3t-value-'quoted' $HOME `x`"
LOG_TOKEN = "log-token-abc123"

SERVER = """python3 - <<'PY'
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("replica=%s gpus=%s greeting=%s secret_ok=%s" % (
            os.environ["SKYPILOT_SERVE_REPLICA_ID"], os.environ["STRATUS_NUM_GPUS_PER_NODE"],
            os.environ["GREETING"], os.environ["HF_TOKEN"] == open("expected").read())).encode()
        self.send_response(200); self.end_headers(); self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
PY
"""


def wait_until(fn, timeout: float = 20.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = fn()
            if value:
                return value
        except (OSError, ValueError) as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"condition not met in {timeout} s (last error: {last!r})")


def get(url: str, token: str | None = None) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def instance_dir(tmp_path: Path) -> Iterator[Path]:
    """The instance's disk; afterwards every process the runner started is killed (its session)."""
    yield tmp_path
    pid_file = tmp_path / "root" / "replica.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def boot(root: Path, home: Path, script: str) -> subprocess.CompletedProcess[str]:
    path = root.parent / "user-data.sh"
    path.write_text(script)
    env = {"PATH": os.environ["PATH"], "STRATUS_ROOT": str(root), "HOME": str(home)}
    return subprocess.run(["bash", str(path)], env=env, capture_output=True, text=True, timeout=60)


def task_with(tmp: Path, port: int, bootstrap: Bootstrap) -> LaunchTask:
    workdir = tmp / "src"
    workdir.mkdir()
    (workdir / "expected").write_text(SECRET)
    (workdir / ".git").mkdir()
    (workdir / ".git" / "config").write_text("not shipped")
    mount = tmp / "weights.txt"
    mount.write_text("weights!")
    mount_dir = tmp / "cfgdir"
    mount_dir.mkdir()
    (mount_dir / "a.yaml").write_text("a: 1")
    return LaunchTask(
        service="svc",
        replica_id=3,
        version=2,
        service_port=port,
        setup="echo setting-up; test -f expected",
        run=SERVER,
        envs={"GREETING": "hello world", "PORT": str(port), "HF_TOKEN": SECRET},
        secret_names=["HF_TOKEN"],
        workdir=str(workdir),
        file_mounts={str(mount): "~/data/weights.txt", str(mount_dir): "cfg"},
        num_gpus=2,
        bootstrap=bootstrap,
    )


def test_the_script_boots_a_replica_that_serves_with_its_secret_and_its_log(
    tmp_path: Path, instance_dir: Path
) -> None:
    port, log_port = free_port(), free_port()
    answers: dict[str, dict[str, object]] = {"boot-1": {"envs": {"HF_TOKEN": SECRET}, "log_token": LOG_TOKEN}}
    with bootstrap_server(answers) as fake:
        task = task_with(tmp_path, port, Bootstrap(url=fake.url, token="boot-1"))
        script = render_startup_script(task, log_port=log_port, cloud="aws")
        assert SECRET not in script and LOG_TOKEN not in script
        assert len(encode_user_data(script, "aws")) <= USER_DATA_LIMITS["aws"]
        root, home = instance_dir / "root", instance_dir / "home"
        home.mkdir()
        done = boot(root, home, script)
        assert done.returncode == 0, done.stderr
        assert SECRET not in done.stdout + done.stderr

        status, body = wait_until(lambda: get(f"http://127.0.0.1:{port}/"))
        assert status == 200
        assert body.decode() == "replica=3 gpus=2 greeting=hello world secret_ok=True"
        assert fake.requests == [("boot-1", 200)]

        # The files it carried, where they belong; .git left out.
        assert (home / "data" / "weights.txt").read_text() == "weights!"
        assert (home / "cfg" / "a.yaml").read_text() == "a: 1"
        assert not (root / "workdir" / ".git").exists()
        assert oct((root / "secrets.env").stat().st_mode & 0o777) == "0o600"

        # The log server: only with the log token; the log has setup's output, no secret.
        wait_until(lambda: get(f"http://127.0.0.1:{log_port}/status", LOG_TOKEN)[0] == 200)
        assert get(f"http://127.0.0.1:{log_port}/log", "wrong")[0] == 401
        assert get(f"http://127.0.0.1:{log_port}/log")[0] == 401
        status, log = get(f"http://127.0.0.1:{log_port}/log?offset=0", LOG_TOKEN)
        assert status == 200 and b"setting-up" in log and SECRET.encode() not in log
        _, later = get(f"http://127.0.0.1:{log_port}/log?offset=5", LOG_TOKEN)
        assert later == log[5:]
        _, phase = get(f"http://127.0.0.1:{log_port}/status", LOG_TOKEN)
        assert json.loads(phase) == {"phase": "running", "exit_code": None}


def test_a_failing_setup_is_recorded_and_run_never_starts(tmp_path: Path, instance_dir: Path) -> None:
    log_port = free_port()
    answers: dict[str, dict[str, object]] = {"t": {"envs": {}, "log_token": LOG_TOKEN}}
    with bootstrap_server(answers) as fake:
        task = LaunchTask(
            service="svc",
            replica_id=1,
            service_port=1,
            setup="echo broken >&2; exit 7",
            run="touch ran",
            bootstrap=Bootstrap(url=fake.url, token="t"),
        )
        root = instance_dir / "root"
        assert boot(root, instance_dir, render_startup_script(task, log_port=log_port)).returncode == 0
        wait_until(lambda: (root / "status").read_text().strip() == "exited 7")
        assert "setup exited with code 7" in (root / "replica.log").read_text()
        assert not (root / "workdir" / "ran").exists()


def test_a_refused_token_stops_the_boot_without_retrying(tmp_path: Path, instance_dir: Path) -> None:
    with bootstrap_server({}) as fake:
        task = LaunchTask(
            service="svc",
            replica_id=1,
            service_port=1,
            run="touch ran",
            envs={"K_SECRET": "v"},
            secret_names=["K_SECRET"],
            bootstrap=Bootstrap(url=fake.url, token="dead"),
        )
        root = instance_dir / "root"
        done = boot(root, instance_dir, render_startup_script(task))
        assert done.returncode == 1
        assert "bootstrap refused (401)" in done.stderr
        assert fake.requests == [("dead", 401)]
        assert (root / "status").read_text().strip() == "exited 97"
        assert not (root / "workdir" / "ran").exists()


def test_a_reboot_reuses_the_fetched_secrets_instead_of_the_dead_token(
    tmp_path: Path, instance_dir: Path
) -> None:
    answers: dict[str, dict[str, object]] = {"once": {"envs": {"A_KEY": "v1"}, "log_token": LOG_TOKEN}}
    with bootstrap_server(answers) as fake:
        task = LaunchTask(
            service="svc",
            replica_id=1,
            service_port=1,
            run='echo "key=$A_KEY" >> ../seen',
            envs={"A_KEY": "v1"},
            secret_names=["A_KEY"],
            bootstrap=Bootstrap(url=fake.url, token="once"),
        )
        root = instance_dir / "root"
        script = render_startup_script(task, log_port=free_port())
        for boots in (1, 2):
            assert boot(root, instance_dir, script).returncode == 0
            wait_until(lambda b=boots: (root / "seen").read_text().count("key=v1") == b)  # type: ignore[misc]
            wait_until(lambda: (root / "status").read_text().strip() == "exited 0")
            os.killpg(int((root / "replica.pid").read_text()), signal.SIGKILL)  # the "reboot"
        assert fake.requests == [("once", 200)]


def test_no_secret_value_appears_in_the_script(tmp_path: Path) -> None:
    task = LaunchTask(
        service="svc",
        replica_id=1,
        service_port=8080,
        run="serve",
        setup="prep",
        envs={"PUBLIC": "shown", "DB_PASSWORD": "pw-9f8e7d", "OTHER": "also-secret-42"},
        secret_names=["DB_PASSWORD", "OTHER"],
        bootstrap=Bootstrap(url="https://api:8765/v1/bootstrap", token="tok"),
    )
    script = render_startup_script(task, cloud="aws")
    assert "pw-9f8e7d" not in script and "also-secret-42" not in script
    assert "export PUBLIC=shown" in script
    assert "DB_PASSWORD" not in script.split("public.env", 1)[1].split("STRATUS_EOF", 2)[1]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"secret_names": ["X_TOKEN"], "envs": {"X_TOKEN": "v"}, "bootstrap": None}, "no bootstrap token"),
        ({"secret_names": ["MISSING"]}, "not in the task's envs"),
        ({"envs": {"BAD-NAME": "v"}}, "not valid shell variable names"),
        ({"run": "  "}, "has no run command"),
        ({"workdir": "relative/dir"}, "is relative"),
        ({"file_mounts": {"s3://bucket/x": "/data"}}, "remote URI"),
    ],
)
def test_bad_tasks_are_refused_with_what_is_wrong(changes: dict[str, object], message: str) -> None:
    base: dict[str, object] = {"service": "svc", "replica_id": 1, "service_port": 1, "run": "serve"}
    with pytest.raises(LaunchError, match=message):
        render_startup_script(LaunchTask(**{**base, **changes}))  # type: ignore[arg-type]


def test_a_workdir_too_big_for_user_data_names_the_limit(tmp_path: Path) -> None:
    big = tmp_path / "big"
    big.mkdir()
    (big / "noise.bin").write_bytes(os.urandom(20_000))  # incompressible
    task = LaunchTask(service="svc", replica_id=1, service_port=1, run="serve", workdir=str(big))
    with pytest.raises(LaunchError, match="over aws's user-data limit of 16384 bytes"):
        render_startup_script(task, cloud="aws")
    assert len(render_startup_script(task, cloud="gcp")) < USER_DATA_LIMITS["gcp"]
