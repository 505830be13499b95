"""``stratus show-gpus`` and ``stratus catalog refresh``: the price catalog, read locally.

    stratus show-gpus                       accelerators and their counts per cloud
    stratus show-gpus A100[:8] [--cloud C] [--region R] [--all-regions] [--json]
    stratus catalog refresh [--cloud C]     rebuild a cloud's prices from its pricing API

Like ``sky show-gpus`` this needs no server: it reads the catalog shipped with Stratus, or the
refreshed file under ``$STRATUS_HOME/catalog/``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, NoReturn

import typer

from libs.catalog import CLOUDS, Catalog, CatalogError, Offer, load_catalog
from libs.catalog.query import (
    accelerator_counts,
    cheapest_per_region,
    cheapest_region_per_type,
    parse_accelerator_filter,
    select,
)
from libs.runtime.settings import Settings

catalog_app = typer.Typer(no_args_is_help=True, help="The price catalog.")


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _load() -> Catalog:
    try:
        return load_catalog(Settings.from_env().home)
    except CatalogError as exc:
        _fail(str(exc))


def _n(x: float | None) -> str:
    if x is None:
        return "-"
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _usd(x: float | None) -> str:
    return "-" if x is None else f"$ {x:.3f}"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def _check_cloud(cloud: str | None) -> str | None:
    if cloud is None:
        return None
    if cloud.lower() not in CLOUDS:
        _fail(f"--cloud {cloud}: unknown cloud; the catalog has {', '.join(CLOUDS)}")
    return cloud.lower()


def show_gpus(
    accelerator: Annotated[
        str | None, typer.Argument(help="ACC or ACC:N, e.g. A100 or A100:8 (default: list them all).")
    ] = None,
    cloud: Annotated[str | None, typer.Option("--cloud", help="Only this cloud (aws, gcp, azure).")] = None,
    region: Annotated[str | None, typer.Option("--region", help="Only this region.")] = None,
    all_regions: Annotated[
        bool, typer.Option("--all-regions", help="Every region (cheapest zone each), not just the cheapest.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON list of offers (with --all-regions: every zone).")
    ] = False,
) -> None:
    """Accelerators, instance types and hourly prices in the catalog (as `sky show-gpus`)."""
    cloud = _check_cloud(cloud)
    catalog = _load()
    name: str | None = None
    count: float | None = None
    if accelerator is not None:
        try:
            name, count = parse_accelerator_filter(accelerator)
        except ValueError as exc:
            _fail(str(exc))
    offers = select(catalog.offers, accelerator=name, count=count, cloud=cloud, region=region)
    offers = [o for o in offers if o.accelerator is not None]
    if not offers:
        where = " ".join(p for p in (f"on {cloud}" if cloud else "", f"in {region}" if region else "") if p)
        scope = select(catalog.offers, cloud=cloud, region=region)
        same = accelerator_counts(
            o for o in scope if name is not None and (o.accelerator or "").lower() == name.lower()
        )
        if same:
            ((acc, by_cloud),) = same.items()
            has = "; ".join(
                f"{c} has {acc} in counts {', '.join(_n(n) for n in ns)}" for c, ns in by_cloud.items()
            )
        else:
            has = "it has " + ", ".join(
                sorted({o.accelerator for o in scope if o.accelerator}, key=str.lower)
            )
        _fail(f"no offer for {accelerator or 'any accelerator'} {where}".rstrip() + f" in the catalog; {has}")
    if accelerator is None and not as_json:
        _print_counts(catalog, offers)
        return
    shown = (
        (offers if as_json else cheapest_per_region(offers))
        if all_regions
        else cheapest_region_per_type(offers)
    )
    if as_json:
        typer.echo(json.dumps([o.to_json() for o in shown], indent=2))
        return
    _print_offers(catalog, shown)


def _header(catalog: Catalog) -> str:
    dates = ", ".join(
        f"{s.cloud} {s.date}" + ("" if s.source == "shipped" else " (refreshed)") for s in catalog.snapshots
    )
    return f"Prices in USD per hour, catalog of {dates}."


def _print_counts(catalog: Catalog, offers: list[Offer]) -> None:
    rows = [["GPU", "CLOUD", "QUANTITIES"]]
    for acc, by_cloud in accelerator_counts(offers).items():
        for cloud, counts in by_cloud.items():
            rows.append([acc, cloud, ", ".join(_n(c) for c in counts)])
    typer.echo(_header(catalog))
    typer.echo(_table(rows))
    typer.echo("`stratus show-gpus A100` lists instance types and prices; --all-regions every region.")


def _print_offers(catalog: Catalog, offers: list[Offer]) -> None:
    rows = [["GPU", "QTY", "CLOUD", "INSTANCE_TYPE", "vCPUs", "HOST_MEMORY", "HOURLY_PRICE",
             "HOURLY_SPOT_PRICE", "REGION", "ZONE"]]  # fmt: skip
    for o in offers:
        mem = "-" if o.memory_gib is None else f"{_n(o.memory_gib)}GB"
        rows.append(
            [
                o.accelerator or "-", _n(o.accelerator_count), o.cloud, o.instance_type, _n(o.vcpus), mem,
                _usd(o.price), _usd(o.spot_price), o.region, o.zone or "-",
            ]
        )  # fmt: skip
    typer.echo(_header(catalog))
    typer.echo(_table(rows))


@catalog_app.command("refresh")
def refresh(
    cloud: Annotated[
        str | None, typer.Option("--cloud", help="Only this cloud (default: aws, gcp and azure).")
    ] = None,
) -> None:
    """Rebuild the catalog's prices from the clouds' pricing APIs into $STRATUS_HOME/catalog/.

    The instance list (which GPUs each type has) comes from the current catalog; the refresh
    updates on-demand and spot prices. AWS uses boto3's credentials (Price List + EC2 spot
    history); GCP Application Default Credentials (Cloud Billing Catalog); Azure's Retail
    Prices API is public. Rows an API does not price keep their previous price.
    """
    from libs.catalog.refresh import refresh_cloud

    home = Settings.from_env().home
    clouds = [_check_cloud(cloud) or ""] if cloud else list(CLOUDS)
    failed = 0
    for name in clouds:
        try:
            report = refresh_cloud(name, home, now=datetime.now(UTC))
        except CatalogError as exc:
            typer.echo(f"{name}: not refreshed: {exc}", err=True)
            failed += 1
            continue
        typer.echo(f"{name}: {report.summary()}")
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("show-gpus")(show_gpus)
    app.add_typer(catalog_app, name="catalog")
