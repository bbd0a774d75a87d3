"""Quotas, the database side: usage per account and window, the MAIL FROM verdict, held mail and
its release when the window opens. The rules themselves are in policy/sending.py."""

from __future__ import annotations

import datetime as dt
import logging
import time

from peewee import fn

from .. import clock, db, events
from ..models import (
    CRITICAL,
    HELD,
    QUEUED,
    WARNING,
    AccountQuota,
    AccountReputation,
    Alert,
    Delivery,
    Message,
    SmtpAccount,
    refresh_messages,
)
from . import sending as sp

log = logging.getLogger(__name__)

QUOTA_ALERT = "quota-{level}"  # alert kinds quota-80, quota-100
HELD_PREFIX = "held: "  # Delivery.last_reply of mail held by policy: "held: quota-hour …"


def quotas_of(account_id: int) -> list[sp.Quota]:
    """Return an account's quotas: those of all its mail first, then per stream; shortest period first."""
    rows = AccountQuota.select().where(AccountQuota.account == account_id)
    return sorted(
        (sp.Quota(r.period, r.limit, r.action, r.stream) for r in rows),
        key=lambda q: (q.stream != "", q.stream, sp.PERIODS.index(q.period)),
    )


def set_quotas(account_id: int, quotas: list[sp.Quota]) -> None:
    """Replace an account's quotas (an empty list removes them all)."""
    counted = [(q.stream, q.period) for q in quotas]
    if len(set(counted)) != len(counted):
        raise sp.PolicyError("give each period (minute, hour, day, month) at most once, for all mail and per stream")
    with db.atomic_write():
        AccountQuota.delete().where(AccountQuota.account == account_id).execute()
        for q in quotas:
            AccountQuota.create(account=account_id, period=q.period, limit=q.limit, action=q.action, stream=q.stream)
    forget_policy(account_id)


def usage(account_id: int, counted: list[tuple[str, str]], now: dt.datetime) -> dict[tuple[str, str], int]:
    """Recipients of the account's outbound mail accepted in the current window of each (stream,
    period); stream "": all its mail."""
    counts = {}
    for stream, period in counted:
        start, _ = sp.window(period, now)
        where = (Message.account == account_id) & (Message.received_at >= start) & (Message.direction == "outbound")
        if stream:
            where &= Message.stream == stream
        counts[stream, period] = Message.select(fn.COALESCE(fn.SUM(Message.rcpt_count), 0)).where(where).scalar()
    return counts


def usage_rows(account_id: int, now: dt.datetime) -> list[dict]:
    """Each quota of an account with its usage in the current window (the account page, the CLI)."""
    quotas = quotas_of(account_id)
    used = usage(account_id, [(q.stream, q.period) for q in quotas], now)
    rows = []
    for q in quotas:
        start, end = sp.window(q.period, now)
        count = used[q.stream, q.period]
        rows.append(
            {
                "stream": q.stream,
                "period": q.period,
                "limit": q.limit,
                "action": q.action,
                "used": count,
                "percent": 100 if q.limit == 0 else min(100, round(count * 100 / q.limit)),
                "window_start": start,
                "window_end": end,
            }
        )
    return rows


# Every MAIL FROM needs the account's quotas and reputation verdict, which change rarely: they are
# kept POLICY_CACHE_SECONDS and dropped at once when this process changes them (the dashboard and
# the sweeps run in it); a change made by the CLI from another process applies within that time.
POLICY_CACHE_SECONDS = 2.0
_policy_cache: dict[int, tuple[float, list[sp.Quota], tuple[str, str] | None]] = {}


def _account_policy(account_id: int) -> tuple[list[sp.Quota], tuple[str, str] | None]:
    cached = _policy_cache.get(account_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1], cached[2]
    quotas = quotas_of(account_id)
    row = AccountReputation.get_or_none(AccountReputation.account == account_id)
    verdict = (row.state, row.reason) if row else None
    _policy_cache[account_id] = (time.monotonic() + POLICY_CACHE_SECONDS, quotas, verdict)
    return quotas, verdict


def cached_verdict(account_id: int) -> tuple[bool, sp.QuotaDecision | None]:
    """Answer check_mail from the cache alone when that needs no database access (the account's
    policy is cached and it has no quota of all its mail): (True, verdict); otherwise (False, None)."""
    cached = _policy_cache.get(account_id)
    if cached is None or cached[0] <= time.monotonic() or any(not q.stream for q in cached[1]):
        return False, None
    return True, sp.reputation_decision(*cached[2]) if cached[2] else None


def needs_send_check(account_id: int, list_send: bool) -> bool:
    """Whether the DATA of an account's message needs check_send (a database read): the account has
    quotas of one stream, or any quota for a list send; or its policy is not cached (the check reads it)."""
    cached = _policy_cache.get(account_id)
    if cached is None or cached[0] <= time.monotonic():
        return True
    return any(q.stream or list_send for q in cached[1])


def forget_policy(account_id: int | None = None) -> None:
    """Drop cached quotas and verdicts (of one account, or all) after changing them."""
    if account_id is None:
        _policy_cache.clear()
    else:
        _policy_cache.pop(account_id, None)


def check_mail(account_id: int) -> tuple[sp.QuotaDecision | None, list[sp.Alarm]]:
    """MAIL FROM of an account (on an executor thread): the quotas of all its mail (those of one stream
    wait for the message's X-Stream: check_send), then the reputation guard's hold; with the alarms to
    raise (80 % and 100 % of a quota, once per window).

    A quota that rejects or defers wins over a reputation hold.
    """
    quotas, verdict = _account_policy(account_id)
    decision, alarms = _decide(account_id, [q for q in quotas if not q.stream], 1)
    if decision is not None and decision.action != sp.HOLD:
        return decision, alarms
    held = sp.reputation_decision(*verdict) if verdict else None
    return held or decision, alarms


def check_send(
    account_id: int, stream: str, adding: int, list_send: bool
) -> tuple[sp.QuotaDecision | None, list[sp.Alarm]]:
    """DATA of an account's message, once its stream is known (an executor thread): the quotas of that
    stream, counting the message as one; for a list send (``list_send``), the quotas of all its mail
    too, counting its ``adding`` members (MAIL FROM counted it as one message)."""
    quotas, _ = _account_policy(account_id)
    applying = [q for q in quotas if q.stream == stream or (list_send and not q.stream)]
    return _decide(account_id, applying, adding)


def _decide(account_id: int, quotas: list[sp.Quota], adding: int) -> tuple[sp.QuotaDecision | None, list[sp.Alarm]]:
    if not quotas:
        return None, []
    now = clock.now()
    used = usage(account_id, [(q.stream, q.period) for q in quotas], now)
    alarms = [a for q in quotas if (a := _quota_alarm(account_id, q, used[q.stream, q.period], now))]
    return sp.quota_decision(quotas, used, now, adding), alarms


def _quota_alarm(account_id: int, quota: sp.Quota, used: int, now: dt.datetime) -> sp.Alarm | None:
    level = sp.alert_level(quota, used)
    if level is None:
        return None
    username = SmtpAccount.get_by_id(account_id).username
    start, _ = sp.window(quota.period, now)
    subject = f"account {username}: {quota.per} quota, window from {start:%Y-%m-%d %H:%M}"
    kind = QUOTA_ALERT.format(level=level)
    if Alert.select().where((Alert.kind == kind) & (Alert.subject == subject)).exists():
        return None  # once per level and window
    text = (
        f"{used} of {quota.limit} recipients this {quota.per} ({level} %); "
        f"over it, new mail is {'deferred' if quota.action == sp.DEFER else quota.action + 'ed'}"
    )
    return sp.Alarm(kind, subject, text, CRITICAL if level >= 100 else WARNING)


def held_reply(decision: sp.QuotaDecision) -> str:
    """The reason held deliveries carry in the log: "held: quota-hour until 2025-03-14 16:00 UTC"."""
    if decision.release_at:
        until = f" until {decision.release_at:%Y-%m-%d %H:%M} UTC"
    else:
        until = ", until an admin releases it"
    return f"{HELD_PREFIX}{decision.reason}{until}"


def release_due_holds(now: dt.datetime, lease_seconds: int) -> list[tuple[int, str, int]]:
    """Release deliveries held by a quota whose window has opened; return them as (id, domain, priority)
    for the caller to enqueue (their lease says a task is on its way)."""
    due = (
        (Delivery.status == HELD)
        & (Delivery.next_attempt_at <= now)
        & Delivery.last_reply.startswith(f"{HELD_PREFIX}quota-")
    )
    rows = list(Delivery.select(Delivery.id, Delivery.domain, Delivery.priority, Delivery.message).where(due))
    if not rows:
        return []
    with db.atomic_write():
        lease = now + dt.timedelta(seconds=lease_seconds)
        released = list(
            Delivery.update(status=QUEUED, next_attempt_at=now, last_reply="", lease_until=lease, updated_at=now)
            .where(Delivery.id.in_([r.id for r in rows]) & due)
            .returning(Delivery.message, Delivery.rcpt)
            .tuples()
            .execute()
        )
        refresh_messages({r.message_id for r in rows})
        events.record([events.Occurred(m, events.RELEASED, rcpt, now, {"by": "quota window"}) for m, rcpt in released])
    log.info("released %d deliveries held by quota", len(rows))
    return [(r.id, r.domain, r.priority) for r in rows]
