"""Sending domains: add, the DNS records to publish (with copy buttons), "Check DNS" per record,
and key rotation. Checks run on the dns-check thread; the page polls for the result."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for

from .. import checker, domains
from ..models import Domain
from .permissions import admin_required, viewer_required

bp = Blueprint("domains", __name__, url_prefix="/domains")


def _get(domain_id: int) -> Domain:
    domain = Domain.get_or_none(Domain.id == domain_id)
    if domain is None:
        abort(404)
    return domain


def records_context(domain: Domain) -> dict:
    """What the records fragment shows: each record with its last check, and whether a check runs."""
    status = domain.statuses()
    rows = [
        (r, status.get(r.key, {"status": "unchecked", "error": ""}))
        for r in domains.records(domain, current_app.config["HOSTNAME"])
    ]
    return {
        "domain": domain,
        "rows": rows,
        "checking": domains.checking(domain.id),
        "hostname_warning": domains.hostname_problem(current_app.config["HOSTNAME"]),
    }


@bp.get("/")
@viewer_required
def domains_list():
    """List sending domains with their verification and record status."""
    rows = [(d, d.statuses()) for d in Domain.select().order_by(Domain.name)]
    return render_template("domains/list.html", rows=rows, error=None, name="")


@bp.post("/")
@admin_required
def domains_create():
    """Add a domain: generate its DKIM keys, then show the records to publish."""
    try:
        domain = domains.add(request.form.get("name", ""))
    except domains.DomainError as exc:
        rows = [(d, d.statuses()) for d in Domain.select().order_by(Domain.name)]
        return render_template("domains/list.html", rows=rows, error=str(exc), name=request.form.get("name", "")), 400
    flash(f"{domain.name} was added: publish the records below at your DNS provider, then press Check DNS.")
    return redirect(url_for("domains.domains_show", domain_id=domain.id))


@bp.get("/<int:domain_id>")
@viewer_required
def domains_show(domain_id: int):
    """Show the records to publish and the last check of each."""
    return render_template("domains/show.html", **records_context(_get(domain_id)))


@bp.get("/<int:domain_id>/records")
@viewer_required
def domains_records(domain_id: int):
    """The records fragment (htmx polls it while a check runs)."""
    return render_template("domains/_records.html", **records_context(_get(domain_id)))


@bp.post("/<int:domain_id>/check")
@admin_required
def domains_check(domain_id: int):
    """Start a DNS check of every record on the dns-check thread."""
    domain = _get(domain_id)
    domains.check_in_background(domain.id, current_app.config)
    if request.headers.get("HX-Request"):
        return render_template("domains/_records.html", **records_context(domain))
    return redirect(url_for("domains.domains_show", domain_id=domain.id))


@bp.post("/<int:domain_id>/rotate")
@admin_required
def domains_rotate(domain_id: int):
    """Generate new DKIM keys under a new selector (used once their record is published)."""
    domain = domains.rotate(_get(domain_id))
    flash(
        f"New keys for {domain.name}: publish the two new DKIM records; "
        "signing switches to them once Check DNS finds them."
    )
    return redirect(url_for("domains.domains_show", domain_id=domain.id))


@bp.get("/<int:domain_id>/reputation")
@viewer_required
def domains_reputation(domain_id: int):
    """The BIMI record, and the PTR and blocklists of the outbound address (the doctor's checks), as a
    fragment the page loads after it shows: the lookups take up to a few seconds."""
    domain = _get(domain_id)
    findings = checker.domain_findings(current_app.config, domain.name)
    return render_template("domains/_reputation.html", domain=domain, findings=findings)
