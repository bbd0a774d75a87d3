"""`appliance` commands: doctor."""

from __future__ import annotations

import ipaddress

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import doctor as checks
from .base import cli, emit


def _ip_option(ctx, param, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an IP address") from None


def _domain_option(ctx, param, value: str) -> str:
    domain = value.strip().rstrip(".")
    if "." not in domain or any(c.isspace() or c in "/@:" for c in domain):
        raise click.BadParameter(f"{value!r} is not a domain name")
    return domain


@cli.command()
@click.option(
    "--ip",
    default=None,
    metavar="ADDRESS",
    callback=_ip_option,
    help="Public address mail leaves from, for the PTR and blocklist checks. "
    "Default: the address this machine uses towards the internet (give it behind NAT).",
)
@click.option(
    "--probe-domain",
    default="gmail.com",
    show_default=True,
    metavar="DOMAIN",
    callback=_domain_option,
    help="Domain whose first MX the outbound port 25 check talks to (unused with SMARTHOST).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 60),
    default=5.0,
    show_default=True,
    help="Seconds each connection, SMTP reply and DNS lookup may take.",
)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def doctor(ip: str | None, probe_domain: str, timeout: float, as_json: bool) -> None:
    """Check ports, certificate, DNS, PTR, outbound port 25 and blocklists; exit 1 when one FAILs."""
    results = checks.run(dict(current_app.config), ip=ip, probe_domain=probe_domain, timeout=timeout)
    counts = checks.summary(results)
    lines = [
        f"{r.status:<4}  {r.check:<11} {r.detail}" + (f" → {r.hint}" if r.hint and r.status != checks.OK else "")
        for r in results
    ]
    lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
    emit([r.as_dict() for r in results], as_json, "\n".join(lines))
    if counts[checks.FAIL]:
        raise click.exceptions.Exit(1)
