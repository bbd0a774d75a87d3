"""Step 2, pace: which claimed deliveries may go now, per provider group and under the IP warm-up.

After step 1 (route) and before step 3 (connect), and again for the rows a session claims next.
The destination's provider group is recognised by recipient domain, then by the MX host names that
route found. Over the group's daily, hourly or session cap, or over the warm-up's daily cap, a
delivery waits (status `deferred`, reason `pacing` or `warmup`, next_attempt_at when the window
opens) instead of failing. The hourly cap is the group's new-IP or warmed-up figure (or between
them, as the warm-up plan progresses), spread evenly over the hour's minutes; within each cap higher
priority goes first and lower lanes keep a share (policy/sending.py, lane_allows). Sends are counted
per group and hour in SendCount, so the caps
hold across restarts. With a SMARTHOST the upstream paces and our IP is not the one warming up, so
everything passes.
"""

from __future__ import annotations

import datetime as dt
import functools
import threading
from collections import Counter

from peewee import fn

from .. import clock, db
from ..models import DEFERRED, QUEUED, SENDING, Claimed, Delivery, ProviderGroup, refresh_messages
from ..policy import groups, warmup
from ..policy import sending as sp
from .route import Route
from .sessions import SessionCounter

SESSIONS = SessionCounter()  # per provider group
# One batch's read-decide-count at a time, so two workers never both take a cap's last slot.
_deciding = threading.Lock()


def waiting_by_priority(now: dt.datetime, domain: str | None = None) -> dict[int, int]:
    """Count deliveries due now (or within a lane re-check) per priority, for one domain or all."""
    query = Delivery.select(Delivery.priority, fn.COUNT(Delivery.id)).where(
        Delivery.status.in_([QUEUED, DEFERRED]) & (Delivery.next_attempt_at <= now + sp.LANE_RECHECK)
    )
    if domain is not None:
        query = query.where(Delivery.domain == domain)
    return dict(query.group_by(Delivery.priority).tuples())


def defer(rows: list[Claimed], wait: sp.Wait, now: dt.datetime) -> None:
    """Put claimed rows back to wait (no attempt is counted: nothing was sent)."""
    ids = [d.id for d in rows]

    def job() -> None:
        Delivery.update(
            status=DEFERRED,
            next_attempt_at=wait.until,
            lease_until=None,
            updated_at=now,
            last_reply=f"{wait.reason}: {wait.text}",
        ).where(Delivery.id.in_(ids) & (Delivery.status == SENDING)).execute()
        refresh_messages({d.message_id for d in rows})

    db.write(job).result()


class Gate:
    """Step 2, pace, for one session to one destination domain: ``admit`` then, at the end, ``close``."""

    def __init__(self, settings: dict, domain: str, route: Route):
        self.settings = settings
        self.domain = domain
        self.direct = route.smarthost is None
        self.group = groups.group_for(domain, [t.name for t in route.targets]) if self.direct else None
        self.holding = False  # one of the group's sessions

    def admit(self, rows: list[Claimed]) -> list[Claimed]:
        """Step 2, pace: return the rows (in priority order) that may be sent now; defer the others."""
        if not rows or not self.direct:
            return rows
        now = clock.now()
        group = ProviderGroup.get_by_id(self.group.id)  # caps and throttle state as they are now
        throttled = group.throttled_until is not None and now < group.throttled_until
        rule = groups.as_group(group)
        day_cap, progress = warmup.warmup_today(now.date())
        # The hour's count matters here only to a throttled group without an hourly cap: it gets half
        # of what it sent this hour.
        uncapped = sp.hourly_cap(rule, progress) is None
        hourly, sessions = sp.effective_caps(
            rule,
            throttled=throttled,
            progress=progress,
            sent_last_hour=groups.sent_in_hour(group.name, now) if throttled and uncapped else 0,
        )
        if not self.holding:
            if not SESSIONS.acquire(group.name, sessions):
                defer(rows, sp.session_wait(group.name, sessions, now), now)
                return []
            self.holding = True
        admitted: list[Claimed] = []
        waits: dict[sp.Wait, list[Claimed]] = {}
        share = self.settings["LOW_PRIORITY_SHARE"]
        with _deciding:
            # Counts are read only for the caps in force (with none, every row goes).
            group_day_cap = rule.daily_cap
            used_hour = groups.sent_in_hour(group.name, now) if hourly is not None else 0
            used_group_day = groups.sent_in_day(group.name, now) if group_day_cap is not None else 0
            used_day = groups.sent_since(sp.window("day", now)[0]) if day_cap is not None else 0
            in_hand = Counter(d.priority for d in rows)
            capped = hourly is not None or group_day_cap is not None
            for_domain = Counter(waiting_by_priority(now, self.domain)) + in_hand if capped else Counter()
            for_all = Counter(waiting_by_priority(now)) + in_hand if day_cap is not None else Counter()
            for row in rows:
                for counts in (in_hand, for_domain, for_all):
                    counts[row.priority] -= 1  # the row itself is not "waiting" for its own decision
                wait = (
                    sp.warmed_up(row.priority, cap=day_cap, used=used_day, waiting=for_all, low_share=share, now=now)
                    or sp.paced_daily(
                        row.priority,
                        group=group.name,
                        cap=group_day_cap,
                        used=used_group_day,
                        waiting=for_domain,
                        low_share=share,
                        now=now,
                    )
                    or sp.paced(
                        row.priority,
                        group=group.name,
                        cap=hourly,
                        used=used_hour,
                        waiting=for_domain,
                        low_share=share,
                        now=now,
                        throttled=throttled,
                    )
                )
                if wait is None:
                    admitted.append(row)
                    used_hour += 1
                    used_group_day += 1
                    used_day += 1
                else:
                    waits.setdefault(wait, []).append(row)
            if admitted:
                counted = db.write(functools.partial(groups.count_sends, group.name, len(admitted), now))
                if capped or day_cap is not None:
                    counted.result()  # the next decision must see these sends
        for wait, waiting in waits.items():
            defer(waiting, wait, now)
        return admitted

    def close(self) -> None:
        if self.holding:
            SESSIONS.release(self.group.name)
            self.holding = False
