"""``stratus keys create|list|revoke SERVICE``: the endpoint API keys of a service, and reading a
spec's ``service.tls`` files for ``stratus up``/``update``.

A service that has a key requires ``Authorization: Bearer <key>`` on its endpoint. Rotation
without downtime: ``keys create`` a new key, move clients to it, ``keys revoke`` the old one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

from libs.spec import SpecError, load_spec

from .cli.common import api_errors, fail, state_of
from .client import StratusClient

keys_app = typer.Typer(no_args_is_help=True, help="Endpoint API keys: create, list, revoke.")


def _seg(value: str) -> str:
    return quote(value, safe="")


class EndpointKeyClient:
    """``/v1/services/{name}/keys``."""

    def __init__(self, client: StratusClient) -> None:
        self._client = client

    def create(self, service: str, name: str) -> dict[str, Any]:
        path = f"/services/{_seg(service)}/keys"
        result: dict[str, Any] = self._client._request("POST", path, body={"name": name})
        return result

    def list(self, service: str, *, include_revoked: bool = False) -> dict[str, Any]:
        result: dict[str, Any] = self._client._request(
            "GET", f"/services/{_seg(service)}/keys", params={"all": include_revoked or None}
        )
        return result

    def revoke(self, service: str, key_id: str) -> dict[str, Any]:
        path = f"/services/{_seg(service)}/keys/{_seg(key_id)}"
        result: dict[str, Any] = self._client._request("DELETE", path)
        return result


ServiceArg = Annotated[str, typer.Argument(help="The service.", show_default=False)]


@keys_app.command("create")
def create(
    ctx: typer.Context,
    service: ServiceArg,
    name: Annotated[
        str, typer.Option("--name", help="Who uses the key (letters, digits, _ . @ -).")
    ] = "default",
) -> None:
    """Create a key and print it (once: only its hash is kept)."""
    with api_errors(), state_of(ctx).client() as client:
        made = EndpointKeyClient(client).create(service, name)
    typer.echo(f"Created endpoint key {made['key_id']} ({made['name']!r}) for {service!r}; shown only once:")
    typer.echo(made["key"])
    typer.echo("Send it as `Authorization: Bearer <key>`; routers accept it within a few seconds.", err=True)


@keys_app.command("list")
def list_(
    ctx: typer.Context,
    service: ServiceArg,
    all_: Annotated[bool, typer.Option("-a", "--all", help="Include revoked keys.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False,
) -> None:
    """The service's keys (ids, names, dates; never the keys)."""
    with api_errors(), state_of(ctx).client() as client:
        out = EndpointKeyClient(client).list(service, include_revoked=all_)
    if as_json:
        typer.echo(json.dumps(out, indent=2))
        return
    state = "required" if out["required"] else "not required (no key yet: the endpoint is open)"
    typer.echo(f"Endpoint keys of {service!r}: {state}")
    typer.echo(f"{'ID':<9} {'NAME':<24} {'CREATED (UTC)':<19}  REVOKED")
    for k in out["keys"]:
        revoked = (k.get("revoked_at") or "-")[:19]
        typer.echo(f"{k['key_id']:<9} {k['name']:<24} {k['created_at'][:19]:<19}  {revoked}")


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    service: ServiceArg,
    key_id: Annotated[str, typer.Argument(help="The key's id (`stratus keys list`).", show_default=False)],
) -> None:
    """Revoke a key: routers refuse it from then on (within a resync, a few seconds)."""
    with api_errors(), state_of(ctx).client() as client:
        EndpointKeyClient(client).revoke(service, key_id)
    typer.echo(f"Revoked endpoint key {key_id} of {service!r}.")


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


def tls_pems(file: Path, yaml_text: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """For ``up``/``update``: the spec's ``service.tls`` files read here (the client side), as the
    request fields ``tls_cert_pem``/``tls_key_pem``; {} without ``service.tls``. A relative path
    is taken from the current directory, else from the YAML's directory."""
    try:
        tls = load_spec(yaml_text, env_overrides=env, source=str(file)).service.tls
    except SpecError as exc:
        fail(str(exc))
    if tls is None:
        return {}
    out = {}
    for field, path in (("tls_cert_pem", tls.certfile), ("tls_key_pem", tls.keyfile)):
        p = Path(path).expanduser()
        if not p.is_absolute() and not p.exists():
            p = file.parent / p
        try:
            out[field] = p.read_text()
        except OSError as exc:
            what = "certfile" if field == "tls_cert_pem" else "keyfile"
            fail(f"service.tls.{what}: cannot read {path!r}: {exc.strerror or exc}")
        except UnicodeDecodeError:
            fail(f"service.tls: {path!r} is not a PEM text file")
    return out
