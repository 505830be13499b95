"""From service YAML text to a validated ``ServiceSpec``: the entry points of the package."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from . import unsupported
from .envs import parse_env_map, references, resolve_envs, substitute
from .errors import Issue, SpecFileError, SpecValidationError
from .fields import Issues, Section, describe, join
from .model import Resources, ServiceSection, ServiceSpec
from .resources import parse_resources
from .service import ParsedService, parse_service
from .validate import validate_spec
from .yaml_load import load_yaml

TASK_FIELDS = (
    "name", "service", "resources", "envs", "secrets", "setup", "run", "workdir", "file_mounts", "num_nodes",
)  # fmt: skip
STORAGE_FIELDS = ("name", "source", "store", "mode", "persistent")
STORAGE_MODES = ("MOUNT", "COPY", "MOUNT_CACHED")
_NAME = re.compile(r"^[a-zA-Z]([-_.a-zA-Z0-9]*[a-zA-Z0-9])?$")


def load_spec(
    text: str, *, env_overrides: Mapping[str, str] | None = None, source: str = "<string>"
) -> ServiceSpec:
    """Parse and validate a service YAML. Raises a ``SpecError`` listing every problem found."""
    data, lines = load_yaml(text, source)
    if data is None:
        raise SpecValidationError(
            [Issue("", "the spec is empty; a service YAML needs service, resources.ports and run")],
            source=source,
        )
    if not isinstance(data, Mapping):
        raise SpecValidationError(
            [
                Issue(
                    "",
                    f"the top level must be a mapping of fields (service, resources, run, ...), "
                    f"got {describe(data)}",
                )
            ],
            source=source,
            lines=lines,
        )
    issues = Issues()
    spec = _build(data, env_overrides or {}, issues)
    issues.items.extend(validate_spec(spec, known=issues))
    if issues:
        raise SpecValidationError(issues.items, source=source, lines=lines)
    return spec


def load_spec_file(
    path: str | os.PathLike[str], env_overrides: Mapping[str, str] | None = None
) -> ServiceSpec:
    return load_spec(read_spec_text(path), env_overrides=env_overrides, source=os.fspath(path))


def read_spec_text(path: str | os.PathLike[str]) -> str:
    """A YAML file's text; a ``SpecFileError`` says why it cannot be read."""
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError as exc:
        raise SpecFileError([Issue("", "no such file")], source=source) from exc
    except IsADirectoryError as exc:
        raise SpecFileError([Issue("", "is a directory, not a YAML file")], source=source) from exc
    except UnicodeDecodeError as exc:
        raise SpecFileError([Issue("", f"is not UTF-8 text: {exc.reason}")], source=source) from exc
    except OSError as exc:
        raise SpecFileError([Issue("", f"cannot be read: {exc.strerror}")], source=source) from exc
    return text


def _build(data: Mapping[Any, Any], overrides: Mapping[str, str], issues: Issues) -> ServiceSpec:
    top = Section(data, "", issues, (*TASK_FIELDS, *unsupported.TASK))
    unsupported.refuse(top, unsupported.TASK, issues)
    name = top.string("name")
    if name is not None and not _NAME.match(name):
        issues.add("name", "must start with a letter and contain only letters, digits, '-', '_' and '.'")
    # SkyServe launches each replica on num_nodes nodes; accepted here as by SkyPilot's parser,
    # refused at up where no provider can honour it (launch.check_launchable).
    nodes = top.integer("num_nodes", minimum=1) if top.has("num_nodes") else None
    envs, secrets = resolve_envs(
        parse_env_map(top.get("envs"), "envs", issues),
        parse_env_map(top.get("secrets"), "secrets", issues),
        overrides,
        issues,
    )
    filled = _fill_in_envs(data, envs, secrets, issues)
    if not top.has("service"):
        issues.add("service", "required: a service YAML is a task YAML with a service section")
        parsed = ParsedService({}, None)
    else:
        parsed = parse_service(filled.get("service"), "service", issues)
    resources = parse_resources(top.get("resources"), "resources", issues)
    run = None
    if not top.has("run"):
        issues.add("run", "required: the command that starts the HTTP server")
    else:
        run = top.string("run")
    setup = top.get("setup")
    if setup is not None and not isinstance(setup, str):
        issues.add("setup", f"must be a string (shell commands), got {describe(setup)}")
        setup = None
    elif setup is not None and not setup.strip():
        setup = None
    return ServiceSpec(
        name=name,
        service=ServiceSection(**parsed.fields, ports=_service_port(parsed.port, resources, issues)),
        resources=resources,
        envs=envs,
        secrets=secrets,
        setup=setup,
        run=run or "",
        workdir=_workdir(filled.get("workdir"), issues),
        file_mounts=_file_mounts(filled.get("file_mounts"), issues),
        num_nodes=nodes or 1,
    )


def _fill_in_envs(
    data: Mapping[Any, Any], envs: Mapping[str, str], secrets: Mapping[str, str], issues: Issues
) -> dict[str, Any]:
    """``service``, ``file_mounts`` and ``workdir`` with ``$NAME`` filled in, as SkyPilot does.

    A secret may fill readiness probe headers only (their values never enter the event log);
    anywhere else it would be recorded in plain text, so it is refused.
    """
    filled = {key: substitute(data.get(key), envs) for key in ("service", "file_mounts", "workdir")}
    service = filled["service"]
    probe = service.get("readiness_probe") if isinstance(service, Mapping) else None
    if isinstance(probe, Mapping) and isinstance(probe.get("headers"), Mapping):
        service["readiness_probe"] = {**probe, "headers": substitute(probe["headers"], secrets)}
    for key, value in filled.items():
        if key == "service" and isinstance(value, Mapping) and isinstance(probe, Mapping):
            value = {**value, "readiness_probe": {k: v for k, v in probe.items() if k != "headers"}}
        for name in sorted(references(value) & secrets.keys()):
            issues.add(
                key,
                f"references the secret {name}: only readiness_probe.headers may use a secret "
                "(elsewhere its value would be recorded in plain text); use an env instead",
            )
    return filled


def _workdir(value: object, issues: Issues) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        issues.add("workdir", f"must be a string (a local directory), got {describe(value)}")
        return None
    return value


def _service_port(explicit: int | None, resources: Resources, issues: Issues) -> int:
    """service.ports, else the one port all candidates expose (membership is checked later)."""
    if explicit is not None:
        return explicit
    written = {tuple(c.ports) for c in resources.candidates() if c.ports}
    if len(written) == 1 and len(ports := next(iter(written))) == 1:
        return ports[0]
    if written and not issues.failed("resources", "service.ports"):
        shown = ", ".join(str(list(p)) for p in sorted(written))
        issues.add(
            "resources.ports",
            f"must be a single port when service.ports is not set (got {shown}); "
            "set service.ports to the port to serve",
        )
    return 0


def _file_mounts(value: object, issues: Issues) -> dict[str, str | dict[str, Any]]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        issues.add("file_mounts", f"must be a mapping of remote paths to sources, got {describe(value)}")
        return {}
    out: dict[str, str | dict[str, Any]] = {}
    for dest, src in value.items():
        if not isinstance(dest, str) or not dest.strip():
            issues.add("file_mounts", f"destination paths must be non-empty strings, got {describe(dest)}")
            continue
        at = join("file_mounts", dest)
        if isinstance(src, str) and src.strip():
            out[dest] = src
        elif (storage := _storage(src, at, issues)) is not None:
            out[dest] = storage
    return out


def _storage(value: object, at: str, issues: Issues) -> dict[str, Any] | None:
    sec = Section.of(value, at, issues, STORAGE_FIELDS)
    if sec is None:
        return None
    before = len(issues.items)
    sec.string("name")
    sec.string("store")
    sec.boolean("persistent")
    sec.string("mode", choices=STORAGE_MODES)
    source = sec.get("source")
    if source is not None and not (
        isinstance(source, str) or (isinstance(source, list) and all(isinstance(s, str) for s in source))
    ):
        issues.add(
            sec.at("source"), f"must be a path, a bucket URL or a list of paths, got {describe(source)}"
        )
    if not sec.has("name") and source is None:
        issues.add(at, "a storage mount needs a name or a source")
    return dict(value) if len(issues.items) == before and isinstance(value, Mapping) else None
