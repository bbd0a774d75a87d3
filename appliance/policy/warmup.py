"""The IP warm-up, the database side: the plan row and today's cap."""

from __future__ import annotations

import datetime as dt

from .. import clock, db
from ..models import WarmupPlan
from . import sending as sp


def warmup_plan() -> WarmupPlan:
    """Return the warm-up plan row (created disabled, with the default steps, on first use)."""
    row = WarmupPlan.get_or_none(WarmupPlan.id == 1)
    if row is None:
        with db.atomic_write():
            WarmupPlan.insert(
                id=1, enabled=False, start_date=None, steps=sp.format_plan(sp.DEFAULT_WARMUP)
            ).on_conflict_ignore().execute()
        row = WarmupPlan.get_by_id(1)
    return row


def set_warmup(
    *, enabled: bool | None = None, start_date: dt.date | None = None, steps: str | None = None
) -> WarmupPlan:
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


def warmup_today(today: dt.date) -> tuple[int | None, float]:
    """Return, from one read of the plan, today's cap on all deliveries (None when the warm-up is off
    or finished) and how far through its plan the IP is (0 to 1).

    The progress is counted from the plan's start date whether or not its daily cap is applied
    (turning the cap off later does not make the IP new again); it is 0 until a warm-up has been
    started, so provider groups at stage auto keep their new-IP figures.
    """
    row = warmup_plan()
    if row.start_date is None:
        return None, 0.0
    steps = sp.parse_plan(row.steps)
    cap = sp.daily_cap(steps, row.start_date, today) if row.enabled else None
    return cap, sp.progress(steps, row.start_date, today)
