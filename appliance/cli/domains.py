"""`appliance` commands: domains."""

from __future__ import annotations

from typing import Any

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import domains as domains_service
from ..models import (
    Domain,
)
from .base import cli, emit, ts


@cli.group("domains")
def domains_group() -> None:
    """Sending domains: DKIM keys, the DNS records to publish, and their checks."""


def domain_dict(d: Domain, hostname: str) -> dict[str, Any]:
    data = domains_service.describe(d, hostname)
    return data | {"created_at": ts(data["created_at"]), "last_checked_at": ts(data["last_checked_at"])}


def _domain_text(data: dict[str, Any]) -> str:
    lines = [
        f"{data['name']}: {'verified' if data['verified'] else 'NOT verified'}"
        f" (last checked {data['last_checked_at'] or 'never'})"
    ]
    if data["warning"]:
        lines.append(f"  WARNING: {data['warning']}")
    for r in data["records"]:
        lines.append(f"  [{r['status']}] {r['label']}: {r['type']} {r['name']}")
        shown = " ".join(f'"{part}"' for part in r["strings"]) if r["type"] == "TXT" else r["value"]
        lines.append(f"      {shown}")
        if r["error"]:
            lines.append(f"      -> {r['error']}")
    return "\n".join(lines)


def _get_domain(ref: str) -> Domain:
    domain = domains_service.find(ref)
    if domain is None:
        raise click.ClickException(f"no sending domain {ref!r}: appliance domains add DOMAIN")
    return domain


@domains_group.command("add")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def domains_add(name: str, as_json: bool) -> None:
    """Add a sending domain: generate its DKIM keys and print the DNS records to publish."""
    try:
        domain = domains_service.add(name)
    except domains_service.DomainError as exc:
        raise click.ClickException(str(exc)) from None
    data = domain_dict(domain, current_app.config["HOSTNAME"])
    emit(data, as_json, _domain_text(data) + f"\npublish these records, then: appliance domains check {domain.name}")


@domains_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def domains_list(as_json: bool) -> None:
    """List sending domains."""
    rows = [domain_dict(d, current_app.config["HOSTNAME"]) for d in Domain.select().order_by(Domain.name)]
    text = (
        "\n".join(
            f"{r['id']:>4}  {r['name']:<32} {'verified' if r['verified'] else 'not verified':<13}"
            f" {sum(x['status'] == 'pass' for x in r['records'])}/{len(r['records'])} records pass"
            for r in rows
        )
        or "no sending domains yet: appliance domains add DOMAIN"
    )
    emit(rows, as_json, text)


@domains_group.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def domains_show(ref: str, as_json: bool) -> None:
    """Show a domain's DNS records and the last check of each."""
    data = domain_dict(_get_domain(ref), current_app.config["HOSTNAME"])
    emit(data, as_json, _domain_text(data))


@domains_group.command("check")
@click.argument("refs", nargs=-1, metavar="[DOMAIN]...")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def domains_check(refs: tuple[str, ...], as_json: bool) -> None:
    """Look every record up in DNS now (all domains when none is named) and say what passes.

    Exits 1 when a checked domain is not verified, so scripts and monitoring can act on it.
    """
    settings = current_app.config
    targets = [_get_domain(r) for r in refs] or list(Domain.select().order_by(Domain.name))
    rows = []
    for domain in targets:
        domains_service.check(domain, settings)
        rows.append(domain_dict(Domain.get_by_id(domain.id), settings["HOSTNAME"]))
    emit(rows, as_json, "\n".join(_domain_text(r) for r in rows) or "no sending domains yet")
    if not all(Domain.get_by_id(d.id).verified for d in targets):
        raise click.exceptions.Exit(1)


@domains_group.command("rotate")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def domains_rotate(ref: str, as_json: bool) -> None:
    """Make new DKIM keys under a new selector; signing switches to them once their record is found."""
    domain = domains_service.rotate(_get_domain(ref))
    data = domain_dict(domain, current_app.config["HOSTNAME"])
    emit(
        data,
        as_json,
        _domain_text(data) + f"\npublish the new DKIM records, then: appliance domains check {domain.name}",
    )
