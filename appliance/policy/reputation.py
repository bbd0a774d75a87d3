"""The reputation guard, the database side: bounce and complaint rates per account over the
window, the stored verdicts, and an alarm for each step up (raised by appliance/guard.py)."""

from __future__ import annotations

import datetime as dt

from peewee import JOIN, fn

from .. import clock, db
from ..models import (
    BOUNCED,
    CRITICAL,
    DELIVERED,
    WARNING,
    AccountReputation,
    Delivery,
    Message,
    SmtpAccount,
    Suppression,
)
from . import sending as sp
from .quotas import forget_policy

REPUTATION_WARN, REPUTATION_HOLD = "reputation-warn", "reputation-hold"


def thresholds(settings: dict) -> sp.Thresholds:
    return sp.Thresholds(
        warn_bounce=settings["REPUTATION_WARN_BOUNCE"],
        warn_complaint=settings["REPUTATION_WARN_COMPLAINT"],
        hold_bounce=settings["REPUTATION_HOLD_BOUNCE"],
        hold_complaint=settings["REPUTATION_HOLD_COMPLAINT"],
        window_hours=settings["REPUTATION_WINDOW_HOURS"],
        min_volume=settings["REPUTATION_MIN_VOLUME"],
    )


def check(settings: dict, now: dt.datetime | None = None) -> tuple[dict[int, sp.Reputation], list[sp.Alarm]]:
    """Judge every account that sent within the window; store verdicts; return them with an alarm
    for each step up.

    Sent = delivered + bounced deliveries of mail accepted in the window; complaints = those
    recipients suppressed with source "complaint" (feedback loops) within the window.
    """
    now = now or clock.now()
    t = thresholds(settings)
    since = now - dt.timedelta(hours=t.window_hours)
    counts: dict[int, dict[str, int]] = {}
    finished = (
        Delivery.select(Message.account, Delivery.status, fn.COUNT(Delivery.id))
        .join(Message)
        .where(
            (Message.received_at >= since)
            & Message.account.is_null(False)
            & (Message.direction == "outbound")
            & Delivery.status.in_([DELIVERED, BOUNCED])
        )
        .group_by(Message.account, Delivery.status)
        .tuples()
    )
    for account_id, status, n in finished:
        counts.setdefault(account_id, {})[status] = n
    complained = (
        Delivery.select(Message.account, fn.COUNT(Delivery.id))
        .join(Message)
        .join(Suppression, JOIN.INNER, on=(Suppression.address == fn.LOWER(Delivery.rcpt)))
        .where(
            (Message.received_at >= since)
            & (Suppression.source == "complaint")
            & (Suppression.created_at >= since)
            & Message.account.is_null(False)
        )
        .group_by(Message.account)
        .tuples()
    )
    complaints = dict(complained)
    known = {r.account_id: r for r in AccountReputation.select()}
    verdicts, alarms = {}, []
    for account_id in set(counts) | set(known):
        c = counts.get(account_id, {})
        sent = c.get(DELIVERED, 0) + c.get(BOUNCED, 0)
        verdict = sp.reputation(sent, c.get(BOUNCED, 0), complaints.get(account_id, 0), t)
        verdicts[account_id] = verdict
        before = known[account_id].state if account_id in known else sp.OK
        with db.atomic_write():
            AccountReputation.insert(
                account=account_id,
                state=verdict.state,
                reason=verdict.reason,
                sent=sent,
                bounced=c.get(BOUNCED, 0),
                complaints=complaints.get(account_id, 0),
                checked_at=now,
            ).on_conflict(  # an upsert both SQLite and PostgreSQL run (no REPLACE on PostgreSQL)
                conflict_target=[AccountReputation.account],
                preserve=[
                    AccountReputation.state,
                    AccountReputation.reason,
                    AccountReputation.sent,
                    AccountReputation.bounced,
                    AccountReputation.complaints,
                    AccountReputation.checked_at,
                ],
            ).execute()
        forget_policy(account_id)
        if _rank(verdict.state) > _rank(before):
            alarms.append(_reputation_alarm(account_id, verdict))
    return verdicts, alarms


def _rank(state: str) -> int:
    return (sp.OK, sp.WARN, sp.HOLD).index(state)


def _reputation_alarm(account_id: int, verdict: sp.Reputation) -> sp.Alarm:
    username = SmtpAccount.get_by_id(account_id).username
    rates = f"bounces {verdict.bounce_rate:.1%}, complaints {verdict.complaint_rate:.2%}"
    if verdict.state == sp.HOLD:
        return sp.Alarm(
            REPUTATION_HOLD,
            f"account {username}",
            f"{rates}: its new mail is held until an admin releases it (queue release)",
            CRITICAL,
        )
    return sp.Alarm(
        REPUTATION_WARN,
        f"account {username}",
        f"{rates}: past the warning threshold; at the hold threshold its new mail will be held",
        WARNING,
    )


_last_check: dict[str, dt.datetime] = {}


def check_if_due(settings: dict, now: dt.datetime) -> list[sp.Alarm]:
    """Run the reputation guard when REPUTATION_CHECK_INTERVAL has passed since the last run;
    return the alarms it raised."""
    last = _last_check.get(settings["DATA_DIR"])
    if last is not None and now - last < dt.timedelta(seconds=settings["REPUTATION_CHECK_INTERVAL"]):
        return []
    _last_check[settings["DATA_DIR"]] = now
    return check(settings, now)[1]
