"""The database side of the sending policy: what the pure rules in ``sending_policy`` are fed with.

Quota usage per account and the MAIL FROM decision, the release of held mail when its window opens,
provider groups and their throttle state, send counts per group and hour, the warm-up plan, and the
reputation guard's periodic verdicts (with their alerts).
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from peewee import JOIN, fn

from . import alerts, clock, db, events
from . import sending_policy as sp
from .models import (
    BOUNCED,
    DELIVERED,
    HELD,
    QUEUED,
    AccountQuota,
    AccountReputation,
    Alert,
    Delivery,
    Message,
    ProviderGroup,
    SendCount,
    SmtpAccount,
    Suppression,
    WarmupPlan,
    refresh_messages,
)

log = logging.getLogger(__name__)

QUOTA_ALERT = "quota-{level}"  # alert kinds quota-80, quota-100
REPUTATION_WARN, REPUTATION_HOLD = "reputation-warn", "reputation-hold"
HELD_PREFIX = "held: "  # Delivery.last_reply of mail held by policy: "held: quota-hour …"


# -- quotas ------------------------------------------------------------------------------------
def quotas_of(account_id: int) -> list[sp.Quota]:
    """Return an account's quotas, shortest period first."""
    rows = AccountQuota.select().where(AccountQuota.account == account_id)
    return sorted((sp.Quota(r.period, r.limit, r.action) for r in rows), key=lambda q: sp.PERIODS.index(q.period))


def set_quotas(account_id: int, quotas: list[sp.Quota]) -> None:
    """Replace an account's quotas (an empty list removes them all)."""
    periods = [q.period for q in quotas]
    if len(set(periods)) != len(periods):
        raise sp.PolicyError("give each period (minute, hour, day, month) at most once")
    with db.atomic_write():
        AccountQuota.delete().where(AccountQuota.account == account_id).execute()
        for q in quotas:
            AccountQuota.create(account=account_id, period=q.period, limit=q.limit, action=q.action)
    forget_policy(account_id)


def usage(account_id: int, periods: list[str], now: dt.datetime) -> dict[str, int]:
    """Recipients of the account's outbound mail accepted in the current window of each period."""
    counts = {}
    for period in periods:
        start, _ = sp.window(period, now)
        counts[period] = Message.select(fn.COALESCE(fn.SUM(Message.rcpt_count), 0)).where(
            (Message.account == account_id) & (Message.received_at >= start) & (Message.direction == "outbound")
        ).scalar()
    return counts


def usage_rows(account_id: int, now: dt.datetime) -> list[dict]:
    """Each quota of an account with its usage in the current window (the account page, the CLI)."""
    quotas = quotas_of(account_id)
    used = usage(account_id, [q.period for q in quotas], now)
    rows = []
    for q in quotas:
        start, end = sp.window(q.period, now)
        percent = 100 if q.limit == 0 else min(100, round(used[q.period] * 100 / q.limit))
        rows.append({"period": q.period, "limit": q.limit, "action": q.action, "used": used[q.period],
                     "percent": percent, "window_start": start, "window_end": end})
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
    policy is cached and it has no quotas): (True, verdict); otherwise (False, None)."""
    cached = _policy_cache.get(account_id)
    if cached is None or cached[0] <= time.monotonic() or cached[1]:
        return False, None
    return True, sp.reputation_decision(*cached[2]) if cached[2] else None


def forget_policy(account_id: int | None = None) -> None:
    """Drop cached quotas and verdicts (of one account, or all) after changing them."""
    if account_id is None:
        _policy_cache.clear()
    else:
        _policy_cache.pop(account_id, None)


def check_mail(settings: dict, account_id: int) -> sp.QuotaDecision | None:
    """MAIL FROM of an account (on an executor thread): quotas, then the reputation guard's hold.

    A quota that rejects or defers wins over a reputation hold; 80 % and 100 % of a quota raise an
    alert once per window.
    """
    now = clock.now()
    quotas, verdict = _account_policy(account_id)
    used = usage(account_id, [q.period for q in quotas], now)
    for q in quotas:
        _quota_alert(settings, account_id, q, used[q.period], now)
    decision = sp.quota_decision(quotas, used, now)
    if decision is not None and decision.action != sp.HOLD:
        return decision
    held = sp.reputation_decision(*verdict) if verdict else None
    return held or decision


def _quota_alert(settings: dict, account_id: int, quota: sp.Quota, used: int, now: dt.datetime) -> None:
    level = sp.alert_level(quota, used)
    if level is None:
        return
    username = SmtpAccount.get_by_id(account_id).username
    start, _ = sp.window(quota.period, now)
    subject = f"account {username}: {quota.period} quota, window from {start:%Y-%m-%d %H:%M}"
    kind = QUOTA_ALERT.format(level=level)
    if Alert.select().where((Alert.kind == kind) & (Alert.subject == subject)).exists():
        return  # once per level and window
    text = (f"{used} of {quota.limit} recipients this {quota.period} ({level} %); "
            f"over it, new mail is {'deferred' if quota.action == sp.DEFER else quota.action + 'ed'}")
    alerts.raise_alert(settings, kind, subject, text, alerts.CRITICAL if level >= 100 else alerts.WARNING)


def held_reply(decision: sp.QuotaDecision) -> str:
    """The reason held deliveries carry in the log: "held: quota-hour until 2025-03-14 16:00 UTC"."""
    until = f" until {decision.release_at:%Y-%m-%d %H:%M} UTC" if decision.release_at else ", until an admin releases it"
    return f"{HELD_PREFIX}{decision.reason}{until}"


def release_due_holds(now: dt.datetime, lease_seconds: int) -> list[tuple[int, str, int]]:
    """Release deliveries held by a quota whose window has opened; return them as (id, domain, priority)
    for the caller to enqueue (their lease says a task is on its way)."""
    due = ((Delivery.status == HELD) & (Delivery.next_attempt_at <= now)
           & Delivery.last_reply.startswith(f"{HELD_PREFIX}quota-"))
    rows = list(Delivery.select(Delivery.id, Delivery.domain, Delivery.priority, Delivery.message).where(due))
    if not rows:
        return []
    with db.atomic_write():
        lease = now + dt.timedelta(seconds=lease_seconds)
        released = list(Delivery.update(status=QUEUED, next_attempt_at=now, last_reply="", lease_until=lease,
                                        updated_at=now).where(
            Delivery.id.in_([r.id for r in rows]) & due
        ).returning(Delivery.message, Delivery.rcpt).tuples().execute())
        refresh_messages({r.message_id for r in rows})
        events.record([events.Occurred(m, events.RELEASED, rcpt, now, {"by": "quota window"})
                       for m, rcpt in released])
    log.info("released %d deliveries held by quota", len(rows))
    return [(r.id, r.domain, r.priority) for r in rows]


# -- provider groups and send counts -----------------------------------------------------------
def _lines(patterns: tuple[str, ...]) -> str:
    return "\n".join(patterns)


def group_rows() -> list[ProviderGroup]:
    """Return the provider groups in matching order, creating the defaults on first use."""
    rows = list(ProviderGroup.select().order_by(ProviderGroup.position, ProviderGroup.id))
    if rows:
        return rows
    with db.atomic_write():
        for position, g in enumerate(sp.DEFAULT_GROUPS):
            ProviderGroup.insert(
                name=g.name, position=position, domain_patterns=_lines(g.domains), mx_patterns=_lines(g.mx_hosts),
                hourly_cap=g.hourly_cap, session_cap=g.session_cap,
            ).on_conflict_ignore().execute()
    return list(ProviderGroup.select().order_by(ProviderGroup.position, ProviderGroup.id))


def as_group(row: ProviderGroup) -> sp.Group:
    return sp.Group(row.name, tuple(row.domain_patterns.split()), tuple(row.mx_patterns.split()),
                    row.hourly_cap, row.session_cap)


def group_for(domain: str, mx_hosts: list[str]) -> ProviderGroup:
    """Return the provider group row of a destination (recipient domain, then MX host names)."""
    rows = group_rows()
    name = sp.match_group([as_group(r) for r in rows], domain, mx_hosts).name
    return next((r for r in rows if r.name == name), rows[-1])


def save_group(name: str, *, domains: list[str] | None = None, mx_hosts: list[str] | None = None,
               hourly_cap: int | None | bool = False, session_cap: int | None | bool = False) -> ProviderGroup:
    """Create or change a provider group; a cap given as None removes it (False: leave it)."""
    group_rows()
    row = ProviderGroup.get_or_none(ProviderGroup.name == name)
    if row is None:
        position = (ProviderGroup.select(fn.MAX(ProviderGroup.position)).scalar() or 0)
        default = ProviderGroup.get_or_none(ProviderGroup.name == sp.DEFAULT_GROUP)
        row = ProviderGroup(name=name, position=position)
        if default is not None:  # a new group is matched before the catch-all
            default.position = position + 1
            default.save()
    if domains is not None:
        row.domain_patterns = _lines(tuple(d.strip().lower() for d in domains if d.strip()))
    if mx_hosts is not None:
        row.mx_patterns = _lines(tuple(h.strip().lower() for h in mx_hosts if h.strip()))
    for field_name, value in (("hourly_cap", hourly_cap), ("session_cap", session_cap)):
        if value is not False:
            if value is not None and value < 0:
                raise sp.PolicyError(f"{field_name.replace('_', ' ')} cannot be negative")
            setattr(row, field_name, value)
    row.save()
    return row


def note_rate_limit(settings: dict, domain: str, mx_host: str, reply: str, now: dt.datetime) -> ProviderGroup:
    """Slow a group down after a remote rate-limit reply (inside the caller's transaction)."""
    row = group_for(domain, [mx_host] if mx_host else [])
    base = settings["THROTTLE_SECONDS"]
    recent = row.throttled_until is not None and now < row.throttled_until + dt.timedelta(seconds=base)
    strikes = row.throttle_strikes + 1 if recent else 1
    ProviderGroup.update(
        throttled_until=sp.throttle_until(strikes, now, base), throttle_strikes=strikes,
        throttle_reply=reply[:500], throttled_at=now,
    ).where(ProviderGroup.id == row.id).execute()
    log.warning("provider group %s slowed down after %s: %s", row.name, mx_host or domain, reply)
    return ProviderGroup.get_by_id(row.id)


def hour_of(now: dt.datetime) -> dt.datetime:
    return sp.window("hour", now)[0]


def count_sends(provider: str, n: int, now: dt.datetime) -> None:
    """Add ``n`` deliveries let through to the group's count for this hour (inside a transaction)."""
    p = db.database.param  # plain SQL: once per delivery batch, on the writer thread
    db.database.execute_sql(
        f'INSERT INTO "send_count" ("provider", "hour", "count") VALUES ({p}, {p}, {p}) '
        'ON CONFLICT ("provider", "hour") DO UPDATE SET "count" = "send_count"."count" + excluded."count"',
        (provider, SendCount.hour.db_value(hour_of(now)), n))


def sent_in_hour(provider: str, now: dt.datetime) -> int:
    row = SendCount.get_or_none((SendCount.provider == provider) & (SendCount.hour == hour_of(now)))
    return row.count if row else 0


def sent_since(start: dt.datetime, end: dt.datetime | None = None) -> int:
    """Deliveries let through to every group between ``start`` and ``end`` (whole hours)."""
    query = SendCount.select(fn.COALESCE(fn.SUM(SendCount.count), 0)).where(SendCount.hour >= start)
    if end is not None:
        query = query.where(SendCount.hour < end)
    return query.scalar()


def sent_per_day(first: dt.date, days: int) -> dict[dt.date, int]:
    """Deliveries let through per day, for the warm-up chart."""
    start = dt.datetime.combine(first, dt.time())
    totals = {first + dt.timedelta(days=i): 0 for i in range(days)}
    rows = SendCount.select(SendCount.hour, SendCount.count).where(
        (SendCount.hour >= start) & (SendCount.hour < start + dt.timedelta(days=days)))
    for row in rows:
        totals[row.hour.date()] += row.count
    return totals


# -- warm-up -----------------------------------------------------------------------------------
def warmup_plan() -> WarmupPlan:
    """Return the warm-up plan row (created disabled, with the default steps, on first use)."""
    row = WarmupPlan.get_or_none(WarmupPlan.id == 1)
    if row is None:
        with db.atomic_write():
            WarmupPlan.insert(id=1, enabled=False, start_date=None, steps=sp.format_plan(sp.DEFAULT_WARMUP)
                              ).on_conflict_ignore().execute()
        row = WarmupPlan.get_by_id(1)
    return row


def set_warmup(*, enabled: bool | None = None, start_date: dt.date | None = None, steps: str | None = None) -> WarmupPlan:
    """Change the warm-up plan; enabling it without a start date starts it today."""
    row = warmup_plan()
    if steps is not None:
        row.steps = sp.format_plan(sp.parse_plan(steps))
    if start_date is not None:
        row.start_date = start_date
    if enabled is not None:
        row.enabled = enabled
    if row.enabled and row.start_date is None:
        row.start_date = clock.now().date()
    row.save()
    return row


def warmup_cap(today: dt.date) -> int | None:
    """Today's cap on all deliveries, or None when the warm-up is off or finished."""
    row = warmup_plan()
    if not row.enabled or row.start_date is None:
        return None
    return sp.daily_cap(sp.parse_plan(row.steps), row.start_date, today)


# -- reputation guard --------------------------------------------------------------------------
def thresholds(settings: dict) -> sp.Thresholds:
    return sp.Thresholds(
        warn_bounce=settings["REPUTATION_WARN_BOUNCE"], warn_complaint=settings["REPUTATION_WARN_COMPLAINT"],
        hold_bounce=settings["REPUTATION_HOLD_BOUNCE"], hold_complaint=settings["REPUTATION_HOLD_COMPLAINT"],
        window_hours=settings["REPUTATION_WINDOW_HOURS"], min_volume=settings["REPUTATION_MIN_VOLUME"],
    )


def check_reputation(settings: dict, now: dt.datetime | None = None) -> dict[int, sp.Reputation]:
    """Judge every account that sent within the window; store verdicts; alert on each step up.

    Sent = delivered + bounced deliveries of mail accepted in the window; complaints = those
    recipients suppressed with source "complaint" (feedback loops) within the window.
    """
    now = now or clock.now()
    t = thresholds(settings)
    since = now - dt.timedelta(hours=t.window_hours)
    counts: dict[int, dict[str, int]] = {}
    finished = (Delivery.select(Message.account, Delivery.status, fn.COUNT(Delivery.id))
                .join(Message).where((Message.received_at >= since) & Message.account.is_null(False)
                                     & (Message.direction == "outbound") & Delivery.status.in_([DELIVERED, BOUNCED]))
                .group_by(Message.account, Delivery.status).tuples())
    for account_id, status, n in finished:
        counts.setdefault(account_id, {})[status] = n
    complained = (Delivery.select(Message.account, fn.COUNT(Delivery.id)).join(Message)
                  .join(Suppression, JOIN.INNER, on=(Suppression.address == fn.LOWER(Delivery.rcpt)))
                  .where((Message.received_at >= since) & (Suppression.source == "complaint")
                         & (Suppression.created_at >= since) & Message.account.is_null(False))
                  .group_by(Message.account).tuples())
    complaints = dict(complained)
    known = {r.account_id: r for r in AccountReputation.select()}
    verdicts = {}
    for account_id in set(counts) | set(known):
        c = counts.get(account_id, {})
        sent = c.get(DELIVERED, 0) + c.get(BOUNCED, 0)
        verdict = sp.reputation(sent, c.get(BOUNCED, 0), complaints.get(account_id, 0), t)
        verdicts[account_id] = verdict
        before = known[account_id].state if account_id in known else sp.OK
        with db.atomic_write():
            AccountReputation.insert(
                account=account_id, state=verdict.state, reason=verdict.reason, sent=sent,
                bounced=c.get(BOUNCED, 0), complaints=complaints.get(account_id, 0), checked_at=now,
            ).on_conflict(  # an upsert both SQLite and PostgreSQL run (no REPLACE on PostgreSQL)
                conflict_target=[AccountReputation.account],
                preserve=[AccountReputation.state, AccountReputation.reason, AccountReputation.sent,
                          AccountReputation.bounced, AccountReputation.complaints, AccountReputation.checked_at],
            ).execute()
        forget_policy(account_id)
        if _rank(verdict.state) > _rank(before):
            _reputation_alert(settings, account_id, verdict)
    return verdicts


def _rank(state: str) -> int:
    return (sp.OK, sp.WARN, sp.HOLD).index(state)


def _reputation_alert(settings: dict, account_id: int, verdict: sp.Reputation) -> None:
    username = SmtpAccount.get_by_id(account_id).username
    rates = f"bounces {verdict.bounce_rate:.1%}, complaints {verdict.complaint_rate:.2%}"
    if verdict.state == sp.HOLD:
        alerts.raise_alert(settings, REPUTATION_HOLD, f"account {username}",
                           f"{rates}: its new mail is held until an admin releases it (queue release)", alerts.CRITICAL)
    else:
        alerts.raise_alert(settings, REPUTATION_WARN, f"account {username}",
                           f"{rates}: past the warning threshold; at the hold threshold its new mail will be held")


_last_check: dict[str, dt.datetime] = {}


def check_reputation_if_due(settings: dict, now: dt.datetime) -> None:
    """Run the reputation guard when REPUTATION_CHECK_INTERVAL has passed since the last run."""
    last = _last_check.get(settings["DATA_DIR"])
    if last is not None and now - last < dt.timedelta(seconds=settings["REPUTATION_CHECK_INTERVAL"]):
        return
    _last_check[settings["DATA_DIR"]] = now
    check_reputation(settings, now)
