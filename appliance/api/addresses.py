"""``/api/v1/senders``, ``/api/v1/domains`` and ``/api/v1/suppressions``: the appliance's sender
addresses, sending domains (their DNS records and checks) and suppression list, through the
functions the dashboard and the CLI call (senders.py, domains.py, suppressions.py). They are the
whole appliance's (a verified sender or domain serves every account allowed to use it, a
suppression stops every account's mail to the address), so they need an admin key."""

from __future__ import annotations

from flask import current_app
from spectree import Response

from .. import domains, senders, suppressions
from ..models import MANAGE, READ, Domain, Sender
from . import bp, needs, problems
from .common import cut, json_body, not_found, paginate, query
from .manage_accounts import CHANGE_REFUSALS, FOUND_REFUSALS, REFUSALS, shown
from .schemas import (
    DomainCreate,
    DomainOut,
    DomainPage,
    PageQuery,
    SenderCreate,
    SenderOut,
    SenderPage,
    SuppressionCreate,
    SuppressionOut,
    SuppressionPage,
    SuppressionQuery,
)
from .spec import spec


def _refused(field: str, exc: ValueError) -> problems.Problem:
    return problems.invalid([{"field": field, "detail": str(exc)}])


# -- senders -----------------------------------------------------------------------------------
def _sender(sender_id: int) -> Sender:
    row = Sender.get_or_none(Sender.id == sender_id)
    if row is None:
        raise not_found("sender", sender_id)
    return row


@bp.get("/senders")
@needs(READ, admin=True)
@spec.validate(query=PageQuery, resp=Response(HTTP_200=SenderPage, **REFUSALS), tags=["senders"], skip_validation=True)
def api_senders():
    """List the sender addresses and whether they are verified"""
    asked = query(PageQuery)
    found, next_page = paginate(Sender.select().order_by(Sender.email), asked.page, asked.limit)
    return {"senders": [shown(SenderOut, s) for s in found], "next_page": next_page}


@bp.post("/senders")
@needs(MANAGE, admin=True)
@spec.validate(
    json=SenderCreate, resp=Response(HTTP_201=SenderOut, **CHANGE_REFUSALS), tags=["senders"], skip_validation=True
)
def api_senders_create():
    """Add a sender address

    A verification link is mailed to it (mail from it is accepted once it is opened), or with
    `verified: true` the admin vouches for it at once.
    """
    given = json_body(SenderCreate)
    try:
        sender, _ = senders.create(current_app.config, given.address, verified=given.verified)
    except senders.SenderError as exc:
        raise _refused("address", exc) from None
    return shown(SenderOut, Sender.get_by_id(sender.id)), 201, {"Location": f"/api/v1/senders/{sender.id}"}


@bp.get("/senders/<int:sender_id>")
@needs(READ, admin=True)
@spec.validate(resp=Response(HTTP_200=SenderOut, **FOUND_REFUSALS), tags=["senders"], skip_validation=True)
def api_sender(sender_id: int):
    """A sender address"""
    return shown(SenderOut, _sender(sender_id))


@bp.delete("/senders/<int:sender_id>")
@needs(MANAGE, admin=True)
@spec.validate(resp=Response("HTTP_204", **FOUND_REFUSALS), tags=["senders"], skip_validation=True)
def api_sender_delete(sender_id: int):
    """Delete a sender address (mail from it is refused again unless its domain is verified)"""
    senders.delete(_sender(sender_id))
    return "", 204


@bp.post("/senders/<int:sender_id>/resend")
@needs(MANAGE, admin=True)
@spec.validate(resp=Response(HTTP_200=SenderOut, **FOUND_REFUSALS), tags=["senders"], skip_validation=True)
def api_sender_resend(sender_id: int):
    """Mail a sender that is not verified yet a new verification link"""
    sender = _sender(sender_id)
    if sender.verified:
        raise problems.invalid([{"field": "sender", "detail": f"{sender.email} is already verified"}])
    try:
        senders.send_verification(current_app.config, sender)
    except senders.SenderError as exc:
        raise _refused("sender", exc) from None
    return shown(SenderOut, Sender.get_by_id(sender.id))


# -- domains -----------------------------------------------------------------------------------
def _domain(domain_id: int) -> Domain:
    row = Domain.get_or_none(Domain.id == domain_id)
    if row is None:
        raise not_found("domain", domain_id)
    return row


def _domain_out(domain: Domain) -> dict:
    return shown(DomainOut, domains.describe(domain, current_app.config["HOSTNAME"]))


@bp.get("/domains")
@needs(READ, admin=True)
@spec.validate(query=PageQuery, resp=Response(HTTP_200=DomainPage, **REFUSALS), tags=["domains"], skip_validation=True)
def api_domains():
    """List the sending domains with their DNS records and the last check of each"""
    asked = query(PageQuery)
    found, next_page = paginate(Domain.select().order_by(Domain.name), asked.page, asked.limit)
    return {"domains": [_domain_out(d) for d in found], "next_page": next_page}


@bp.post("/domains")
@needs(MANAGE, admin=True)
@spec.validate(
    json=DomainCreate, resp=Response(HTTP_201=DomainOut, **CHANGE_REFUSALS), tags=["domains"], skip_validation=True
)
def api_domains_create():
    """Add a sending domain

    Its DKIM keys are made; the answer lists the DNS records to publish, then ask for a check.
    """
    given = json_body(DomainCreate)
    try:
        domain = domains.add(given.name)
    except domains.DomainError as exc:
        raise _refused("name", exc) from None
    return _domain_out(domain), 201, {"Location": f"/api/v1/domains/{domain.id}"}


@bp.get("/domains/<int:domain_id>")
@needs(READ, admin=True)
@spec.validate(resp=Response(HTTP_200=DomainOut, **FOUND_REFUSALS), tags=["domains"], skip_validation=True)
def api_domain(domain_id: int):
    """A sending domain with its DNS records and the last check of each"""
    return _domain_out(_domain(domain_id))


@bp.post("/domains/<int:domain_id>/check")
@needs(MANAGE, admin=True)
@spec.validate(resp=Response(HTTP_200=DomainOut, **FOUND_REFUSALS), tags=["domains"], skip_validation=True)
def api_domain_check(domain_id: int):
    """Look the domain's records up in DNS now

    The answer has each record's status (`appliance domains check` does the same).
    """
    domain = _domain(domain_id)
    domains.check(domain, current_app.config)
    return _domain_out(Domain.get_by_id(domain.id))


@bp.post("/domains/<int:domain_id>/rotate")
@needs(MANAGE, admin=True)
@spec.validate(resp=Response(HTTP_200=DomainOut, **FOUND_REFUSALS), tags=["domains"], skip_validation=True)
def api_domain_rotate(domain_id: int):
    """Make new DKIM keys under a new selector

    The answer lists the new records to publish; signing switches to the new keys once a check
    finds them.
    """
    return _domain_out(domains.rotate(_domain(domain_id)))


# -- suppressions ------------------------------------------------------------------------------
@bp.get("/suppressions")
@needs(READ, admin=True)
@spec.validate(
    query=SuppressionQuery,
    resp=Response(HTTP_200=SuppressionPage, **REFUSALS),
    tags=["suppressions"],
    skip_validation=True,
)
def api_suppressions():
    """List the suppressed addresses, newest first"""
    asked = query(SuppressionQuery)
    found = suppressions.search(asked.search, limit=asked.limit + 1, offset=(asked.page - 1) * asked.limit)
    rows, next_page = cut(found, asked.page, asked.limit)
    return {"suppressions": [shown(SuppressionOut, s) for s in rows], "next_page": next_page}


@bp.post("/suppressions")
@needs(MANAGE, admin=True)
@spec.validate(
    json=SuppressionCreate,
    resp=Response(HTTP_201=SuppressionOut, **CHANGE_REFUSALS),
    tags=["suppressions"],
    skip_validation=True,
)
def api_suppressions_create():
    """Suppress an address for every stream (the relay never sends to it)"""
    given = json_body(SuppressionCreate)
    try:
        row = suppressions.add(given.address, given.reason)
    except suppressions.SuppressionError as exc:
        raise _refused("address", exc) from None
    return shown(SuppressionOut, row), 201


@bp.delete("/suppressions/<path:address>")
@needs(MANAGE, admin=True)
@spec.validate(resp=Response("HTTP_204", **FOUND_REFUSALS), tags=["suppressions"], skip_validation=True)
def api_suppression_delete(address: str):
    """Stop suppressing an address (each of its suppressions: every stream and each unsubscribe)"""
    try:
        suppressions.remove(address)
    except suppressions.SuppressionError:
        raise not_found("suppression", address) from None
    return "", 204
