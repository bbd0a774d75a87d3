"""The alert center: raise (repeats of an open alert fold into its count), list, acknowledge.

A new alert is mailed to ALERT_EMAILS when set: the notice is stored in the alert's own
transaction and goes to the queue as soon as that commits (appliance/notices.py).
"""

from __future__ import annotations

import logging

from . import clock, db, notices
from .models import CRITICAL, INFO, WARNING, Alert

log = logging.getLogger(__name__)

SEVERITIES = (INFO, WARNING, CRITICAL)

UNAUTHORIZED_SENDER_BLOCKED = "unauthorized-sender-blocked"
UNAUTHORIZED_SENDER_ALLOWED = "unauthorized-sender-allowed"
DNS_RECORD_BROKEN = "dns-record-broken"
DOMAIN_UNVERIFIED = "domain-unverified"
DELIVERY_FAILING = "delivery-failing"  # an account's messages bounce or fail (raised per failed message)


def raise_alert(settings: dict, kind: str, subject: str, text: str, severity: str = WARNING) -> Alert:
    """Record an alert, or fold it into the open (unacknowledged) alert of the same kind and subject."""
    now = clock.now()
    with db.atomic_write():
        folded = (
            Alert.update(count=Alert.count + 1, last_seen=now, text=text)
            .where((Alert.kind == kind) & (Alert.subject == subject) & ~Alert.acknowledged)
            .execute()
        )
        if not folded:
            alert = Alert.create(
                kind=kind, severity=severity, subject=subject, text=text, first_seen=now, last_seen=now
            )
    if folded:
        return Alert.get((Alert.kind == kind) & (Alert.subject == subject) & ~Alert.acknowledged)
    if settings["ALERT_EMAILS"]:
        try:
            notices.send(settings, recipients(settings), f"[{severity}] {kind}: {subject}", _mail_text(settings, alert))
        except Exception:  # the alert is recorded; failing to mail it must not fail what raised it
            log.exception("could not mail alert %s", alert.id)
    return alert


def recipients(settings: dict) -> list[str]:
    """Read ALERT_EMAILS (separated by `;`, `,` or whitespace)."""
    return [a for a in settings["ALERT_EMAILS"].replace(";", " ").replace(",", " ").split() if a]


def _mail_text(settings: dict, alert: Alert) -> str:
    return (
        f"{alert.subject}: {alert.text}\n\n"
        f"Kind: {alert.kind}\nSeverity: {alert.severity}\nFirst seen: {alert.first_seen:%Y-%m-%d %H:%M:%S} UTC\n\n"
        f"Repeats are counted on the alert, not mailed again, until it is acknowledged "
        f"(dashboard Alerts page, or `appliance alerts ack {alert.id}`).\n"
        f"-- the mail relay {settings['HOSTNAME']}\n"
    )


def acknowledge(ids: list[int] | None, by: str) -> int:
    """Acknowledge these open alerts (all open ones when ``ids`` is None); return how many."""
    query = Alert.update(acknowledged=True, acknowledged_at=clock.now(), acknowledged_by=by).where(~Alert.acknowledged)
    if ids is not None:
        query = query.where(Alert.id.in_(ids))
    return query.execute()


def open_count() -> int:
    """How many alerts wait for acknowledgement (the menu's badge)."""
    return Alert.select().where(~Alert.acknowledged).count()


def listed(*, include_acknowledged: bool = False, limit: int = 500) -> list[Alert]:
    """Alerts, most recent first; open ones only unless ``include_acknowledged``."""
    query = Alert.select().order_by(Alert.last_seen.desc(), Alert.id.desc()).limit(limit)
    return list(query if include_acknowledged else query.where(~Alert.acknowledged))
