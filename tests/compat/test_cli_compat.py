"""``sky serve`` habits of the ``stratus`` CLI, end to end against a live API: up/update
overrides, ``update`` waiting for its version (``--async`` not), ``status --endpoint PORT
NAME``, ``down`` with glob patterns, ``logs`` with several replicas and ``--sync-down``."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

from typer.testing import CliRunner, Result

from libs.events.types import (
    ReplicaTerminated,
    ServiceRequested,
    ServiceUpdateRequested,
    replica_stream,
    service_stream,
)
from libs.spec.model import REDACTED
from services.api.cli import app
from tests.api.conftest import SERVICE_YAML, Live
from tests.api.fleet_events import assign_endpoint, launch_replica

runner = CliRunner()


async def cli(live: Live, *args: str, home: Path | None = None) -> Result:
    env = {"STRATUS_API_TOKEN": live.api.token}
    if home is not None:
        env["HOME"] = str(home)
    invoke = functools.partial(runner.invoke, app, ["--api-url", live.url, *args], env=env)
    return await asyncio.to_thread(invoke)


async def create(live: Live, name: str, yaml: str = SERVICE_YAML) -> None:
    r = await live.api.http.post("/v1/services", json={"name": name, "yaml": yaml})
    assert r.status_code == 201, r.text


async def synced(live: Live) -> None:
    await live.api.projection.wait_for(await live.api.store.last_position(), 5.0)


async def test_up_overrides_env_file_and_secret(live: Live, tmp_path: Path) -> None:
    spec = tmp_path / "svc.yaml"
    spec.write_text(
        SERVICE_YAML.replace("  cpus: 2\n", "  cpus: 2\n  any_of:\n    - cloud: gcp\n    - cloud: aws\n")
    )
    envs = tmp_path / "prod.env"
    envs.write_text("# model settings\nexport MODEL=llama\nA='from file'\nB=from-file\n")
    result = await cli(
        live, "up", str(spec), "-n", "ov", "-y", "--async", "--cloud", "local", "--cpus", "4+",
        "--memory", "8", "--no-use-spot", "--ports", "8080", "--env-file", str(envs), "--env", "B=from-flag",
        "--secret", "API_KEY=s3cr3t-value",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Follow it with `stratus status ov`" in result.stdout  # --async: no waiting
    recorded = (await live.api.store.read_stream(service_stream("ov")))[0].event
    assert isinstance(recorded, ServiceRequested)
    res = recorded.spec["resources"]
    assert (res["cloud"], res["cpus"], res["memory"], res["use_spot"], res["ports"]) == (
        "local",
        "4+",
        "8",
        False,
        [8080],
    )
    assert [c["cloud"] for c in res["any_of"]] == ["local", "local"]  # every candidate overridden
    assert recorded.spec["envs"] == {"MODEL": "llama", "A": "from file", "B": "from-flag"}
    assert recorded.spec["secrets"] == {"API_KEY": REDACTED}
    assert "s3cr3t-value" not in str(recorded)

    bad = await cli(live, "up", str(spec), "-y", "--env-file", str(tmp_path / "nope.env"))
    assert bad.exit_code == 1 and "nope.env" in bad.stderr
    envs.write_text("not a pair\n")
    bad = await cli(live, "up", str(spec), "-y", "--env-file", str(envs))
    assert bad.exit_code == 1 and "line 1" in bad.stderr and "KEY=VALUE" in bad.stderr


async def test_update_waits_for_its_version_unless_async(live: Live, tmp_path: Path) -> None:
    await create(live, "up2", SERVICE_YAML.replace("replicas: 2", "replicas: 1"))
    await launch_replica(live.api.store, "up2", 1)
    await synced(live)
    v2 = tmp_path / "v2.yaml"
    v2.write_text(SERVICE_YAML.replace("replicas: 2", "replicas: 1").replace("cpus: 2", "cpus: 4"))
    call = asyncio.create_task(cli(live, "update", "up2", str(v2), "-y", "--poll-interval", "0.05"))
    for _ in range(200):  # the update is recorded ...
        if any(
            isinstance(r.event, ServiceUpdateRequested)
            for r in await live.api.store.read_stream(service_stream("up2"))
        ):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)  # ... and the CLI keeps waiting: nothing of version 2 is READY
    assert not call.done()
    await launch_replica(live.api.store, "up2", 2, version=2)
    await live.api.store.append(replica_stream("up2", 1), [ReplicaTerminated(service="up2", replica_id=1)])
    result = await asyncio.wait_for(call, 30)
    assert result.exit_code == 0, result.output
    assert "version 2: 1 of 1 READY; older versions: 0 READY" in result.stdout
    assert "Service 'up2' serves version 2." in result.stdout

    quick = await cli(live, "update", "up2", str(v2), "-y", "--async")
    assert quick.exit_code == 0 and "version 3 requested" in quick.stdout and "Waiting" not in quick.stdout


async def test_status_endpoint_with_port(live: Live) -> None:
    await create(live, "ep")
    await assign_endpoint(live.api.store, "ep", "http://127.0.0.1:30005")
    await synced(live)
    ok = await cli(live, "status", "--endpoint", "8080", "ep")
    assert ok.exit_code == 0 and ok.stdout == "127.0.0.1:30005\n"
    wrong = await cli(live, "status", "--endpoint", "9000", "ep")
    assert wrong.exit_code == 1 and "port 8080 only" in wrong.stderr


async def test_down_with_glob_patterns(live: Live) -> None:
    for name in ("gl-a", "gl-b", "other"):
        await create(live, name)
    await synced(live)
    none = await cli(live, "down", "zz-*", "-y")
    assert none.exit_code == 1 and "no service matches 'zz-*'" in none.stderr
    gone = await cli(live, "down", "gl-*", "-y")
    assert gone.exit_code == 0, gone.output
    assert "'gl-a' is shutting down" in gone.stdout and "'gl-b' is shutting down" in gone.stdout
    assert "other" not in gone.stdout
    await synced(live)
    assert not live.api.projection.state.services["other"].down_requested


async def test_logs_of_several_replicas_and_sync_down(live: Live, tmp_path: Path) -> None:
    await create(live, "lg")
    for rid in (1, 2):
        await launch_replica(live.api.store, "lg", rid)
        log = live.api.settings.replica_log("lg", rid)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(f"replica {rid} says hi\n")
    for component, lines in (("scheduler", "lg: 2 wanted\nlg2: 1 wanted\n"), ("router", "lg: endpoint up\n")):
        path = live.api.settings.component_log(component)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(lines)
    await synced(live)
    both = await cli(live, "logs", "lg", "1", "2", "--no-follow")
    assert both.exit_code == 0, both.output
    assert both.stdout == "==> lg replica 1 <==\nreplica 1 says hi\n==> lg replica 2 <==\nreplica 2 says hi\n"
    follow_two = await cli(live, "logs", "lg", "1", "2")
    assert follow_two.exit_code == 1 and "--no-follow" in follow_two.stderr

    synced_down = await cli(live, "logs", "lg", "--sync-down", home=tmp_path)
    assert synced_down.exit_code == 0, synced_down.output
    (out,) = (tmp_path / "stratus_logs").iterdir()
    assert out.name.startswith("lg_")
    files = {p.name: p.read_text() for p in out.iterdir()}
    assert files == {
        "controller.log": "lg: 2 wanted\n",  # the scheduler's lines about lg only
        "load-balancer.log": "lg: endpoint up\n",
        "replica_1.log": "replica 1 says hi\n",
        "replica_2.log": "replica 2 says hi\n",
    }


async def test_skyserve_0_14_fields_through_the_api_and_status(live: Live) -> None:
    """Every accepted corpus YAML goes through the API's plan, and the richest shows in status -v."""
    corpus = Path(__file__).parent / "corpus"
    for path in sorted(corpus.glob("accept-*.yaml")):
        if path.stem == "accept-tls":
            continue  # up reads the PEM files it names (not in the corpus)
        plan = await cli(live, "up", str(path), "--dry-run", "--json", "--env", "X=1")
        assert plan.exit_code == 0, (path.name, plan.output)
    await create(live, "ia", (corpus / "accept-instance-aware.yaml").read_text())
    await create(live, "fr", (corpus / "accept-fractional-seconds.yaml").read_text())
    await synced(live)
    shown = await cli(live, "status", "-v", "ia", "fr")
    assert shown.exit_code == 0, shown.output
    assert "autoscaling 1-5 replicas at QPS per replica by accelerator: A100 10, L4:1 2.5" in shown.stdout
    assert "at 2.5 QPS per replica (upscale delay 10.5s, downscale delay 30.25s)" in shown.stdout


NO_PROVIDER = {"llm-gpt-oss-gpt-oss-vllm.sky": "cloud nebius: Stratus has no provider for it"}


async def test_skypilots_own_examples_through_the_api(live: Live) -> None:
    """SkyPilot's own accepted examples plan through the API as they are (those naming local
    files, a workdir or file mounts, aside), ``num_nodes > 1`` included; a null secret with
    ``--secret`` as the YAML says; a cloud without a Stratus provider, valid, is refused at ``up``
    naming it."""
    from tests.compat.test_skypilot_compat import NEEDS_VALUES, RECORDED

    planned = 0
    for path in sorted((Path(__file__).parent / "corpus" / "skypilot").glob("*.yaml")):
        text = path.read_text()
        if not RECORDED[path.stem]["accepted"] or "\nworkdir:" in text or "\nfile_mounts:" in text:
            continue
        secrets = [f"--secret={k}={v}" for k, v in NEEDS_VALUES.get(path.stem, ("", {}))[1].items()]
        plan = await cli(live, "up", str(path), "--dry-run", "--json", *secrets)
        if path.stem in NO_PROVIDER:  # a valid cloud Stratus cannot place on: named at up
            assert plan.exit_code != 0 and NO_PROVIDER[path.stem] in plan.output, (path.name, plan.output)
        else:
            assert plan.exit_code == 0, (path.name, plan.output)
            planned += 1
    assert planned >= 12
