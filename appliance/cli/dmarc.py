"""`appliance` commands: dmarc (the aggregate reports mailed to the report address, docs/dmarc.md)."""

from __future__ import annotations

from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from .. import dmarc
from .base import cli, emit


@cli.group("dmarc")
def dmarc_group() -> None:
    """DMARC aggregate reports: who sent mail as your domains, as the mailbox providers saw it."""


def _line(row: dict) -> str:
    return (
        f"{row['id']:>5}  {row['begin'][:10]}  {row['domain']}  {row['org_name']}  "
        f"{row['messages']} messages, {row['failing']} failed DMARC  (p={row['policy']['p'] or '?'}, "
        f"report {row['report_id']})"
    )


@dmarc_group.command("list")
@click.option("--domain", default="", help="Only this domain's reports.")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def dmarc_list(domain: str, as_json: bool) -> None:
    """The reports received, newest first."""
    rows = dmarc.listing(domain)
    emit(rows, as_json, "\n".join(_line(r) for r in rows) or f"no DMARC reports (rua=mailto:{_address()})")


def _address() -> str:
    return dmarc.address(current_app.config["HOSTNAME"])


@dmarc_group.command("show")
@click.argument("report_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def dmarc_show(report_id: int, as_json: bool) -> None:
    """One report with its records (source IP, count, disposition, DKIM and SPF)."""
    report = dmarc.detail(report_id)
    if report is None:
        raise click.ClickException(f"no DMARC report {report_id} (see `appliance dmarc list`)")
    lines = [_line(report), f"period: {report['begin']} to {report['end']}"]
    for r in report["items"]:
        lines.append(
            f"  {r['source_ip']:<39} {r['count']:>7}  dmarc={r['dmarc']} dkim={r['dkim'] or '-'} spf={r['spf'] or '-'}"
            f"  disposition={r['disposition']}  from={r['header_from']}"
        )
    emit(report, as_json, "\n".join(lines))


@dmarc_group.command("sources")
@click.option("--domain", default="", help="Only this domain.")
@click.option("--days", default=30, type=click.IntRange(1, 366), help="Days back from today (UTC).")
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def dmarc_sources(domain: str, days: int, as_json: bool) -> None:
    """Per domain and day, who sent as the domain, failing sources first (the DMARC page)."""
    groups = dmarc.days(current_app.config, domain, days)
    lines = []
    for group in groups:
        lines.append(f"{group['domain']} {group['day']}: {group['messages']} messages, {group['failing']} failed DMARC")
        for s in group["sources"]:
            name = ", ".join(s["ptr"]) or "no PTR"
            state = "aligned" if s["aligned"] else f"FAILS ALIGNMENT: {s['verdict']}"
            lines.append(f"  {s['source_ip']} ({name}) {s['messages']} messages, {s['dmarc_pass']} pass DMARC; {state}")
    emit(groups, as_json, "\n".join(lines) or f"no DMARC reports in the last {days} days")


@dmarc_group.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True)
@with_appcontext
def dmarc_import(path: Path, as_json: bool) -> None:
    """Store a report saved elsewhere: its .zip, .xml.gz or .xml, or the whole mail (.eml)."""
    if path.stat().st_size > 2 * dmarc.MAX_ATTACHMENT_SIZE:  # a mail's base64 is a third larger than its zip
        raise click.ClickException(f"{path} is over {2 * dmarc.MAX_ATTACHMENT_SIZE} bytes: not a DMARC report")
    data = path.read_bytes()
    try:
        report, new = dmarc.import_file(data)
    except dmarc.ReportError as exc:
        raise click.ClickException(exc.reply) from None
    row = {"report_id": report.report_id, "org_name": report.org_name, "domain": report.domain, "new": new}
    row["records"], row["messages"] = len(report.records), report.messages
    text = f"DMARC report {report.report_id} from {report.org_name} for {report.domain}: " + (
        f"{row['records']} records stored" if new else "already stored, nothing changed"
    )
    emit(row, as_json, text)
