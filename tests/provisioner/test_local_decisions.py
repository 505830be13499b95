"""The local provider's pure parts, as tables: isolation choice, names and addresses, the
replica environment, file copies, status, process selection, ids and paths."""

from __future__ import annotations

import ipaddress
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

import pytest

from libs.events.types import Placement
from services.provisioner.clouds.base import InstanceState, LaunchTask
from services.provisioner.clouds.errors import (
    AuthError,
    CapacityError,
    InstanceNotFound,
    LaunchError,
    ProviderError,
    QuotaError,
    TransientError,
)
from services.provisioner.clouds.local_env import INSTANCE_MARKER, inherited_env, replica_env
from services.provisioner.clouds.local_files import plan_copies
from services.provisioner.clouds.local_isolation import (
    NetnsFacts,
    UsernsFacts,
    choose_isolation,
    is_init_userns,
    netns_unavailable,
    parse_cap_eff,
    userns_hints,
)
from services.provisioner.clouds.local_layout import (
    check_service_name,
    new_instance_id,
    parse_instance_id,
    socket_path,
    unix_socket_url,
)
from services.provisioner.clouds.local_netns import (
    MAX_IFNAME,
    addresses_in_use,
    netns_names,
    pick_slot,
    slot_addresses,
)
from services.provisioner.clouds.local_process import ProcFacts, select_members
from services.provisioner.clouds.local_records import InstanceRecord, Lifecycle
from services.provisioner.clouds.local_status import derive_status
from services.provisioner.clouds.log_tail import tail_lines

ROOT_CAPS = 0x000001FFFFFFFFFF
NO_NS = "network namespaces need root"

# --------------------------------------------------------------------------- isolation


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (NetnsFacts(euid=0, cap_eff=ROOT_CAPS, ip_binary="/usr/sbin/ip"), None),
        (NetnsFacts(euid=1000, cap_eff=0, ip_binary="/usr/sbin/ip"), "uid 1000 without them"),
        (NetnsFacts(euid=0, cap_eff=1 << 12, ip_binary="/usr/sbin/ip"), "CAP_SYS_ADMIN"),
        (NetnsFacts(euid=0, cap_eff=ROOT_CAPS, ip_binary=None), "iproute2"),
        (NetnsFacts(euid=0, cap_eff=ROOT_CAPS, ip_binary="ip", init_userns=False), "inside a user namespace"),
    ],
)
def test_netns_availability(facts: NetnsFacts, reason: str | None) -> None:
    found = netns_unavailable(facts)
    assert found is None if reason is None else reason in (found or "")


def test_capabilities_and_user_namespace_are_read_from_proc() -> None:
    assert parse_cap_eff("Name:\tx\nCapInh:\t0\nCapEff:\t000001ffffffffff\n") == ROOT_CAPS
    assert parse_cap_eff("Name:\tx\n") == 0
    assert is_init_userns("         0          0 4294967295\n")
    assert not is_init_userns("         0       1000          1\n")


WORKS = UsernsFacts(error=None)
DENIED = UsernsFacts(
    error="[Errno 1] unshare(CLONE_NEWUSER|CLONE_NEWNET): Operation not permitted",
    sysctls={"kernel.unprivileged_userns_clone": "0", "user.max_user_namespaces": "15000"},
)


@pytest.mark.parametrize(
    ("request_", "netns_reason", "userns", "expected"),
    [
        ("auto", None, None, "netns"),
        ("auto", NO_NS, WORKS, "userns"),
        ("userns", "not chosen", WORKS, "userns"),
        ("netns", None, None, "netns"),
        ("netns", NO_NS, None, LaunchError("isolation='netns' is unavailable: network namespaces need root")),
        ("userns", "not chosen", DENIED, LaunchError("sysctl -w kernel.unprivileged_userns_clone=1")),
        ("auto", NO_NS, DENIED, LaunchError("Operation not permitted")),
    ],
)
def test_choose_isolation(
    request_: str, netns_reason: str | None, userns: UsernsFacts | None, expected: str | LaunchError
) -> None:
    if isinstance(expected, LaunchError):
        with pytest.raises(LaunchError, match=str(expected).replace("(", r"\(").replace(")", r"\)")):
            choose_isolation(request_, netns_reason, userns)  # type: ignore[arg-type]
    else:
        assert choose_isolation(request_, netns_reason, userns) == expected  # type: ignore[arg-type]


def test_no_isolation_at_all_says_why_and_what_to_enable() -> None:
    with pytest.raises(LaunchError) as info:
        choose_isolation("auto", f"{NO_NS} (CAP_NET_ADMIN and CAP_SYS_ADMIN); runs as uid 1000", DENIED)
    message = str(info.value)
    assert "cannot isolate replicas" in message and "listen on the same port" in message
    assert "uid 1000" in message and "Operation not permitted" in message
    assert "Run the provisioner as root" in message and "kernel.unprivileged_userns_clone=1" in message


@pytest.mark.parametrize(
    ("sysctls", "hint"),
    [
        ({"kernel.unprivileged_userns_clone": "0"}, "kernel.unprivileged_userns_clone=1"),
        ({"user.max_user_namespaces": "0"}, "user.max_user_namespaces=15000"),
        ({"kernel.apparmor_restrict_unprivileged_userns": "1"}, "apparmor_restrict_unprivileged_userns=0"),
        ({"user.max_user_namespaces": "100"}, "allow unprivileged user namespaces"),
    ],
)
def test_userns_hints_name_the_knob_that_is_off(sysctls: dict[str, str], hint: str) -> None:
    assert any(hint in h for h in userns_hints(sysctls))


# --------------------------------------------------------------------------- netns names and addresses


def test_netns_names_fit_and_differ_between_state_dirs_and_replicas() -> None:
    a = netns_names(Path("/var/lib/stratus"), "llama", 1)
    assert a == netns_names(Path("/var/lib/stratus"), "llama", 1)  # stable: a stale one is found
    others = [netns_names(Path("/tmp/other"), "llama", 1), netns_names(Path("/var/lib/stratus"), "llama", 2)]
    for names in [a, *others]:
        assert len(names.veth_host) <= MAX_IFNAME and len(names.veth_ns) <= MAX_IFNAME
    assert len({n.netns for n in [a, *others]}) == 3 and len({n.veth_host for n in [a, *others]}) == 3


NET = ipaddress.IPv4Network("10.213.0.0/16")


@pytest.mark.parametrize(
    ("used", "slot"),
    [
        ([], 0),
        (["127.0.0.1", "192.168.1.5"], 0),
        (["10.213.0.1"], 1),
        (["10.213.0.1", "10.213.0.5", "10.213.0.13"], 2),
        (["10.212.255.253", "10.214.0.1"], 0),
    ],
)
def test_pick_slot_takes_the_lowest_free_slash_30(used: list[str], slot: int) -> None:
    assert pick_slot(used, NET) == slot


def test_pick_slot_when_the_range_is_full() -> None:
    small = ipaddress.IPv4Network("10.213.0.0/29")
    assert pick_slot(["10.213.0.1", "10.213.0.5"], small) is None


def test_slot_addresses() -> None:
    assert (slot_addresses(NET, 0).host_ip, slot_addresses(NET, 0).ns_ip) == ("10.213.0.1", "10.213.0.2")
    assert (slot_addresses(NET, 64).host_ip, slot_addresses(NET, 64).ns_ip) == ("10.213.1.1", "10.213.1.2")


def test_addresses_in_use_reads_ip_json() -> None:
    listing = (
        '[{"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},'
        '{"ifname":"st0h","addr_info":[{"family":"inet","local":"10.213.0.1","prefixlen":30}]},'
        '{"ifname":"eth1"}]'
    )
    assert addresses_in_use(listing) == ["127.0.0.1", "10.213.0.1"]
    assert addresses_in_use("") == []


# --------------------------------------------------------------------------- environment


def task(**fields: Any) -> LaunchTask:
    return LaunchTask(service="svc", replica_id=4, service_port=8080, **fields)


def test_replica_env_layers_base_task_and_platform() -> None:
    base = {"PATH": "/usr/bin", "HOME": "/home/u", "GREETING": "base"}
    env = replica_env(
        base,
        task(envs={"GREETING": "task", "SKYPILOT_SERVE_REPLICA_ID": "99", INSTANCE_MARKER: "x"}, num_gpus=8),
        instance_id="svc-4-0123abcd",
        node_ip="10.213.0.2",
    )
    assert env["PATH"] == "/usr/bin" and env["GREETING"] == "task"
    assert env["SKYPILOT_SERVE_REPLICA_ID"] == env["STRATUS_REPLICA_ID"] == "4"  # facts win
    assert env[INSTANCE_MARKER] == "svc-4-0123abcd"
    assert env["SKYPILOT_NUM_GPUS_PER_NODE"] == env["STRATUS_NUM_GPUS_PER_NODE"] == "8"
    assert env["SKYPILOT_NODE_IPS"] == "10.213.0.2" and env["STRATUS_SERVICE_NAME"] == "svc"


def test_inherited_env_keeps_only_what_a_replica_needs() -> None:
    environ = {
        "PATH": "/bin",
        "LC_ALL": "C.UTF-8",
        "DATABASE_URL": "postgres://secret",
        "AWS_SECRET_ACCESS_KEY": "k",
    }
    assert inherited_env(environ) == {"PATH": "/bin", "LC_ALL": "C.UTF-8"}


def test_launch_task_repr_hides_env_values() -> None:
    shown = repr(task(envs={"HF_TOKEN": "hf_verysecret"}))
    assert "HF_TOKEN" in shown and "hf_verysecret" not in shown


# --------------------------------------------------------------------------- file copies


def test_plan_copies_accepts_local_sources_and_relative_destinations() -> None:
    plan = plan_copies(
        task(workdir="/srv/app", file_mounts={"/data/m.bin": "models/m.bin", "/data/cfg": "~/cfg"})
    )
    assert plan.workdir == Path("/srv/app")
    assert plan.mounts == (
        (Path("/data/m.bin"), PurePosixPath("models/m.bin")),
        (Path("/data/cfg"), PurePosixPath("cfg")),
    )
    assert plan_copies(task()).workdir is None


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"workdir": "s3://bucket/app"}, "workdir 's3://bucket/app' is remote"),
        ({"workdir": "app"}, "workdir 'app' is relative"),
        ({"file_mounts": {"gs://b/x": "x"}}, "file_mounts source 'gs://b/x' is remote"),
        ({"file_mounts": {"/a": "/data"}}, "'/data' (from '/a') must be relative or under ~/"),
        ({"file_mounts": {"/a": "../escape"}}, "must be relative"),
        ({"file_mounts": {"/a": "~/"}}, "must be relative"),
        ({"file_mounts": {"/data": "s3://bucket"}}, "swap the pair?"),
    ],
)
def test_plan_copies_rejects_what_it_cannot_copy(fields: dict[str, object], message: str) -> None:
    with pytest.raises(LaunchError) as info:
        plan_copies(task(**fields))
    assert message in str(info.value)


def test_plan_copies_reports_every_problem_at_once() -> None:
    with pytest.raises(LaunchError) as info:
        plan_copies(task(workdir="r2://x", file_mounts={"s3://a": "a", "/b": "/b"}))
    assert str(info.value).count(";") == 2


# --------------------------------------------------------------------------- status


def record(lifecycle: Lifecycle) -> InstanceRecord:
    return InstanceRecord(
        instance_id="svc-1-0123abcd", service="svc", replica_id=1, version=1, placement=Placement(),
        mode="netns", service_port=8080, launched_at=0.0, lifecycle=lifecycle, pid=100, pid_started_at=5.0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("rec", "launching_here", "alive", "phase", "code", "state", "exit_code"),
    [
        (None, False, False, None, None, InstanceState.NOT_FOUND, None),
        (record("terminated"), False, True, "run", None, InstanceState.TERMINATED, None),
        (record("preempted"), False, False, "run", 143, InstanceState.PREEMPTED, None),
        (record("launching"), True, False, None, None, InstanceState.PROVISIONING, None),
        (record("launching"), False, False, None, None, InstanceState.EXITED, None),
        (record("started"), False, True, "setup", None, InstanceState.PROVISIONING, None),
        (record("started"), False, True, None, None, InstanceState.PROVISIONING, None),
        (record("started"), False, True, "run", None, InstanceState.RUNNING, None),
        (record("started"), False, True, "run", 0, InstanceState.RUNNING, None),  # still exiting
        (record("started"), False, False, "setup", 3, InstanceState.EXITED, 3),
        (record("started"), False, False, "run", 0, InstanceState.EXITED, 0),
        (record("started"), False, False, "run", None, InstanceState.EXITED, None),
    ],
)
def test_derive_status(
    rec: InstanceRecord | None,
    launching_here: bool,
    alive: bool,
    phase: str | None,
    code: int | None,
    state: InstanceState,
    exit_code: int | None,
) -> None:
    status = derive_status(
        rec, launching_here=launching_here, launcher_alive=alive, phase=phase, exit_code=code
    )
    assert (status.state, status.exit_code) == (state, exit_code)


# --------------------------------------------------------------------------- process selection

M = "svc-1-0123abcd"
HOST_NS = 4026531840
REPLICA_NS = 4026532999


def proc(pid: int, ppid: int, pgid: int, marker: str | None = None, ns: int = HOST_NS) -> ProcFacts:
    return ProcFacts(pid=pid, ppid=ppid, pgid=pgid, marker=marker, netns_inode=ns)


def select(procs: list[ProcFacts], *, pgid: int | None = 100, netns: int | None = REPLICA_NS) -> set[int]:
    return select_members(procs, marker=M, pgid=pgid, netns_inode=netns, own_pgid=10, own_netns=HOST_NS)


def test_select_members_finds_the_group_the_marked_the_namespace_and_their_children() -> None:
    procs = [
        proc(1, 0, 1),
        proc(10, 1, 10),  # the provisioner
        proc(100, 1, 100, M, REPLICA_NS),  # the launcher
        proc(101, 100, 100, None, REPLICA_NS),  # bash, marker unreadable
        proc(102, 1, 102, M, REPLICA_NS),  # setsid orphan
        proc(103, 102, 103, None, HOST_NS),  # its child that cleared env and left the namespace
        proc(104, 1, 104, None, REPLICA_NS),  # env cleared, re-parented: only the namespace tells
        proc(200, 1, 200, "svc-2-ffffffff", HOST_NS),  # another replica
        proc(201, 200, 200),
    ]
    assert select(procs) == {100, 101, 102, 103, 104}


def test_a_group_or_namespace_with_no_marked_member_is_a_strangers() -> None:
    # The replica is gone; its pgid and namespace inode now belong to someone else.
    procs = [proc(100, 1, 100, None, REPLICA_NS), proc(101, 100, 100, None, REPLICA_NS)]
    assert select(procs) == set()


def test_our_own_group_and_namespace_never_count() -> None:
    procs = [proc(10, 1, 10, None, HOST_NS), proc(11, 10, 10), proc(50, 1, 50, M, HOST_NS), proc(60, 1, 60)]
    assert select(procs, pgid=10, netns=HOST_NS) == {50}


def test_excluded_pids_and_init_are_never_chosen() -> None:
    procs = [proc(1, 0, 1, M), proc(300, 1, 300, M)]
    assert (
        select_members(
            procs,
            marker=M,
            pgid=None,
            netns_inode=None,
            own_pgid=10,
            own_netns=None,
            exclude=frozenset({300}),
        )
        == set()
    )


# --------------------------------------------------------------------------- ids, names, paths


def test_instance_ids_round_trip() -> None:
    assert parse_instance_id(new_instance_id("my-svc-2", 12, "0123abcd")) == ("my-svc-2", 12)
    for bad in ("svc-1", "svc-x-0123abcd", "svc-1-XYZ", "../x-1-0123abcd", "-1-0123abcd", ""):
        assert parse_instance_id(bad) is None


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "-x", ".hidden", "x" * 64, "a..b"])
def test_unsafe_service_names_are_refused(name: str) -> None:
    with pytest.raises(LaunchError, match="cannot name a local replica"):
        check_service_name(name)


def test_socket_path_prefers_the_state_dir_and_falls_back_when_too_long() -> None:
    short = socket_path(Path("/var/lib/stratus"), "svc", 1, Path("/run/user/1000/stratus"))
    assert short == Path("/var/lib/stratus/sockets/svc-1.sock")
    deep = Path("/tmp/" + "d" * 90)
    fallback = socket_path(deep, "svc", 1, Path("/run/user/1000/stratus"))
    assert fallback.parent == Path("/run/user/1000/stratus") and len(bytes(fallback)) <= 107
    assert fallback != socket_path(deep, "svc", 2, Path("/run/user/1000/stratus"))
    with pytest.raises(LaunchError, match="shorter state_dir"):
        socket_path(deep, "svc", 1, deep)


def test_unix_socket_url_percent_encodes_the_whole_path() -> None:
    url = unix_socket_url(Path("/tmp/state dir/sockets/svc-1.sock"))
    assert url == "http+unix://%2Ftmp%2Fstate%20dir%2Fsockets%2Fsvc-1.sock"
    assert unquote(url.removeprefix("http+unix://")) == "/tmp/state dir/sockets/svc-1.sock"


# --------------------------------------------------------------------------- logs and errors


def test_tail_lines(tmp_path: Path) -> None:
    log = tmp_path / "replica.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail_lines(log, 3) == "line 97\nline 98\nline 99"
    assert tail_lines(log, 0) == ""
    assert tail_lines(tmp_path / "missing.log", 3) == ""
    # A bounded read drops the line it cut in half.
    assert tail_lines(log, 1000, max_bytes=20).splitlines() == ["line 98", "line 99"]


def test_errors_carry_the_launch_failure_kind() -> None:
    kinds = {cls: cls.kind for cls in (CapacityError, QuotaError, AuthError, TransientError, LaunchError)}
    assert kinds == {
        CapacityError: "capacity",
        QuotaError: "quota",
        AuthError: "auth",
        TransientError: "transient",
        LaunchError: "other",
    }
    assert issubclass(InstanceNotFound, ProviderError) and "svc-1" in str(InstanceNotFound("svc-1"))
