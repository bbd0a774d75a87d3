"""The analytics report as it was before the roll-up: a scan of the range's deliveries and events,
kept here only as the reference that the roll-up's figures must equal (tests/tracking/test_rollups.py)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict

from peewee import fn

from appliance import analytics, events
from appliance.models import CANCELLED, SUPPRESSED, Delivery, Event, Message
from appliance.policy import acceptance

CHARTED, METRICS = analytics.CHARTED, analytics.METRICS
_EVENT_METRICS = {
    events.DELIVERED: "delivered",
    events.BOUNCED: "bounced",
    events.COMPLAINED: "complained",
    events.OPENED: "opened",
    events.CLICKED: "clicked",
    events.UNSUBSCRIBED: "unsubscribed",
}


class _Figures:
    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.openers: set = set()
        self.clickers: set = set()

    def as_dict(self) -> dict:
        f = analytics.Figures(
            Counter({**self.counts, "unique_human_opens": len(self.openers), "unique_human_clicks": len(self.clickers)})
        )
        return f.as_dict()


def report(since: dt.datetime, until: dt.datetime, *, account_id: int | None = None, stream: str | None = None) -> dict:
    """The report's ``as_dict`` by a scan of the messages received from ``since`` to ``until``."""
    scope = [Message.received_at >= since, Message.received_at < until, Message.direction == "outbound"]
    if account_id is not None:
        scope.append(Message.account == account_id)
    if stream is not None:
        scope.append(Message.stream == stream)
    provider = analytics.provider_names()
    total, providers = _Figures(), defaultdict(_Figures)

    sent = (
        Delivery.select(Delivery.domain, fn.COUNT(Delivery.id))
        .join(Message)
        .where(*scope, Delivery.status.not_in((SUPPRESSED, CANCELLED)))
        .group_by(Delivery.domain)
        .tuples()
    )
    for domain, n in sent:
        total.counts["sent"] += n
        providers[provider(domain)].counts["sent"] += n

    hours = [until.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=h) for h in range(23, -1, -1)]
    days = [until.date() - dt.timedelta(days=d) for d in range(29, -1, -1)]
    hourly = {h: Counter() for h in hours}
    daily = {d: Counter() for d in days}
    links: Counter = Counter()
    link_clickers: dict[str, set] = defaultdict(set)
    rows = (
        Event.select(Event.type, Event.recipient, Event.message, Event.at, Event.details)
        .join(Message)
        .where(*scope, Event.type.in_(list(_EVENT_METRICS)))
        .tuples()
        .iterator()
    )
    for type_, recipient, message_id, at, details in rows:
        metric = _EVENT_METRICS[type_]
        who = (message_id, recipient.lower())
        figures = (total, providers[provider(acceptance.split_address(recipient)[1].lower())])
        machine = False
        if type_ in (events.OPENED, events.CLICKED):
            extra = json.loads(details or "{}")
            machine = bool(extra.get("machine"))
            if type_ == events.CLICKED and not machine:
                links[extra.get("url", "")] += 1
                link_clickers[extra.get("url", "")].add(who)
        for f in figures:
            if machine:
                f.counts[f"machine_{metric}"] += 1
                continue
            f.counts[metric] += 1
            if type_ == events.OPENED:
                f.openers.add(who)
            elif type_ == events.CLICKED:
                f.clickers.add(who)
        if machine or metric not in CHARTED:
            continue
        hour = at.replace(minute=0, second=0, microsecond=0)
        if hour in hourly:
            hourly[hour][metric] += 1
        if at.date() in daily:
            daily[at.date()][metric] += 1
    return {
        **total.as_dict(),
        "providers": {name: f.as_dict() for name, f in sorted(providers.items())},
        "hourly": [{"hour": h.isoformat(), **{m: hourly[h][m] for m in CHARTED}} for h in hours],
        "daily": [{"day": d.isoformat(), **{m: daily[d][m] for m in CHARTED}} for d in days],
        "top_links": [{"url": u, "clicks": n, "unique": len(link_clickers[u])} for u, n in links.most_common(10)],
    }
