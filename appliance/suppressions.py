"""Suppressions as a service: the one place that adds and removes the addresses the relay never sends
to. The dashboard and the CLI add and remove through ``add`` and ``remove`` (one validation, one audit
entry); a hard bounce, a complaint and an unsubscribe are written by ``hard_bounce``, ``complaint`` and
``unsubscribe`` inside the transaction of the outcome that caused them. Each of them gives the list members
of the address the status its suppressions give it now (``ListMember.follow_suppressions``)."""

from __future__ import annotations

import datetime as dt

from . import audit, clock, db
from .models import ListMember, Suppression
from .policy import acceptance


class SuppressionError(ValueError):
    """A request to add or remove a suppression that cannot be done, saying why in a sentence."""


def search(text: str = "", limit: int | None = None, offset: int = 0) -> list[Suppression]:
    """Suppressions newest first, those whose address contains ``text`` (any case) when it is given;
    ``limit`` of them after the first ``offset``."""
    query = Suppression.select().order_by(Suppression.created_at.desc(), Suppression.id.desc())
    if text.strip():
        query = query.where(Suppression.address.contains(text.strip().lower()))
    return list(query.limit(limit).offset(offset or None) if limit else query)


def count() -> int:
    return Suppression.select().count()


def add(address: str, reason: str = "") -> Suppression:
    """Suppress ``address`` for every stream by an admin's hand; raise SuppressionError when it is no
    mailbox or already suppressed for every stream."""
    try:
        address = acceptance.suppression_address(address)
    except ValueError as exc:
        raise SuppressionError(f"{exc}. Write a whole e-mail address, like bob@example.com") from None
    if Suppression.select().where(Suppression.every_stream(address)).exists():
        raise SuppressionError(f"{address} is already suppressed")
    with db.atomic_write():
        row = Suppression.create(
            address=address, reason=reason.strip() or "added by an admin", source="manual", created_at=clock.now()
        )
        ListMember.follow_suppressions([address], row.created_at)
    audit.record("suppression.add", f"address {address}", row.reason)
    return row


def remove(address: str) -> int:
    """Stop suppressing ``address`` (every suppression of it: every stream and each unsubscribe);
    return how many rows went; raise SuppressionError when it was not suppressed."""
    address = address.strip().lower()
    with db.atomic_write():
        removed = Suppression.delete().where(Suppression.address == address).execute()
        ListMember.follow_suppressions([address], clock.now())
    if not removed:
        raise SuppressionError(f"{address} is not suppressed")
    audit.record("suppression.remove", f"address {address}")
    return removed


def remove_by_id(suppression_id: int) -> Suppression | None:
    """Remove one suppression row (the dashboard's button); None when it is already gone."""
    row = Suppression.get_or_none(Suppression.id == suppression_id)
    if row is not None:
        with db.atomic_write():
            row.delete_instance()
            ListMember.follow_suppressions([row.address], clock.now())
        audit.record("suppression.remove", f"address {row.address}")
    return row


def hard_bounce(address: str, reply: str, now: dt.datetime) -> None:
    """Suppress an address a permanent failure said is bad, for every stream (kept as it is when it
    is there already)."""
    Suppression.insert(
        address=address.lower(), reason=f"hard bounce: {reply}", source="bounce", created_at=now
    ).on_conflict_ignore().execute()
    ListMember.follow_suppressions([address], now)


def complaint(address: str, reason: str, now: dt.datetime) -> None:
    """Suppress an address whose owner complained, for every stream (a suppression of it already
    there becomes a complaint: the reputation guard counts those)."""
    Suppression.insert(address=address.lower(), reason=reason, source="complaint", created_at=now).on_conflict(
        conflict_target=[Suppression.address, Suppression.stream, Suppression.domain],
        update={Suppression.source: "complaint", Suppression.reason: reason},
    ).execute()
    ListMember.follow_suppressions([address], now)


def unsubscribe(address: str, from_domain: str, reason: str, now: dt.datetime) -> None:
    """Suppress an address for the broadcast stream of one sending domain only: an unsubscribe never
    stops a password reset or an order mail."""
    Suppression.insert(
        address=address.lower(),
        stream="broadcast",
        domain=from_domain,
        source="unsubscribe",
        reason=reason,
        created_at=now,
    ).on_conflict_ignore().execute()
    ListMember.follow_suppressions([address], now)
