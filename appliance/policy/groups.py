"""Provider groups, the database side: groups and their throttle state, and the sends counted
per group and hour that pacing and the warm-up read."""

from __future__ import annotations

import datetime as dt
import logging

from peewee import fn

from .. import db
from ..models import ProviderGroup, SendCount
from . import sending as sp

log = logging.getLogger(__name__)


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
                name=g.name,
                position=position,
                domain_patterns=_lines(g.domains),
                mx_patterns=_lines(g.mx_hosts),
                hourly_new=g.hourly_new,
                hourly_warm=g.hourly_warm,
                daily_cap=g.daily_cap,
                session_cap=g.session_cap,
                stage=g.stage,
            ).on_conflict_ignore().execute()
    return list(ProviderGroup.select().order_by(ProviderGroup.position, ProviderGroup.id))


def as_group(row: ProviderGroup) -> sp.Group:
    return sp.Group(
        row.name,
        tuple(row.domain_patterns.split()),
        tuple(row.mx_patterns.split()),
        hourly_new=row.hourly_new,
        hourly_warm=row.hourly_warm,
        daily_cap=row.daily_cap,
        session_cap=row.session_cap,
        stage=row.stage,
    )


def group_for(domain: str, mx_hosts: list[str]) -> ProviderGroup:
    """Return the provider group row of a destination (recipient domain, then MX host names)."""
    rows = group_rows()
    name = sp.match_group([as_group(r) for r in rows], domain, mx_hosts).name
    return next((r for r in rows if r.name == name), rows[-1])


CAP_FIELDS = ("hourly_new", "hourly_warm", "daily_cap", "session_cap")


def save_group(
    name: str,
    *,
    domains: list[str] | None = None,
    mx_hosts: list[str] | None = None,
    stage: str | None = None,
    **caps: int | None | bool,
) -> ProviderGroup:
    """Create or change a provider group. Caps are given by their field name (``hourly_new``,
    ``hourly_warm``, ``daily_cap``, ``session_cap``; ``hourly_cap`` sets both hourly figures): None
    removes a cap, False or leaving it out keeps it."""
    if "hourly_cap" in caps:
        both = caps.pop("hourly_cap")
        caps.setdefault("hourly_new", both)
        caps.setdefault("hourly_warm", both)
    unknown = set(caps) - set(CAP_FIELDS)
    if unknown:
        raise TypeError(f"unknown caps: {', '.join(sorted(unknown))}")
    for field_name, value in caps.items():
        if value is not False and value is not None and value < 0:
            raise sp.PolicyError(f"{field_name.replace('_', ' ')} cannot be negative")
    group_rows()
    row = ProviderGroup.get_or_none(ProviderGroup.name == name)
    if row is None:
        position = ProviderGroup.select(fn.MAX(ProviderGroup.position)).scalar() or 0
        default = ProviderGroup.get_or_none(ProviderGroup.name == sp.DEFAULT_GROUP)
        row = ProviderGroup(name=name, position=position)
        if default is not None:  # a new group is matched before the catch-all
            default.position = position + 1
            default.save()
    if domains is not None:
        row.domain_patterns = _lines(tuple(d.strip().lower() for d in domains if d.strip()))
    if mx_hosts is not None:
        row.mx_patterns = _lines(tuple(h.strip().lower() for h in mx_hosts if h.strip()))
    if stage is not None:
        row.stage = sp.parse_stage(stage)
    for field_name, value in caps.items():
        if value is not False:
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
        throttled_until=sp.throttle_until(strikes, now, base),
        throttle_strikes=strikes,
        throttle_reply=reply[:500],
        throttled_at=now,
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
        (provider, SendCount.hour.db_value(hour_of(now)), n),
    )


def sent_in_hour(provider: str, now: dt.datetime) -> int:
    row = SendCount.get_or_none((SendCount.provider == provider) & (SendCount.hour == hour_of(now)))
    return row.count if row else 0


def sent_in_day(provider: str, now: dt.datetime) -> int:
    """Deliveries let through to one group since midnight UTC (whole hours of today)."""
    start, end = sp.window("day", now)
    return (
        SendCount.select(fn.COALESCE(fn.SUM(SendCount.count), 0))
        .where((SendCount.provider == provider) & (SendCount.hour >= start) & (SendCount.hour < end))
        .scalar()
    )


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
        (SendCount.hour >= start) & (SendCount.hour < start + dt.timedelta(days=days))
    )
    for row in rows:
        totals[row.hour.date()] += row.count
    return totals
