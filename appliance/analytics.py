"""Analytics: what became of the messages received in a date range, per stream and account; rates
over human opens and clicks only (machine ones are counted apart), charts by hour and by day, the
links clicked most, and the same figures per recipient provider (the dashboard's analytics page,
its CSV export and `appliance stats` read the same). The figures come from the roll-ups that the
events layer keeps (EventDay for whole days, EventCount for whole hours, LinkDay for the top links;
docs/analytics.md), not from the events themselves, but for the parts of an hour at a range's ends."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from peewee import JOIN, fn

from . import events
from .models import CANCELLED, SUPPRESSED, Delivery, Event, EventCount, EventDay, LinkDay, Message
from .policy import groups
from .policy import sending as sp

METRICS = ("sent", "delivered", "bounced", "complained", "opened", "clicked", "unsubscribed")
_EVENT_METRICS = {
    events.DELIVERED: "delivered",
    events.BOUNCED: "bounced",
    events.COMPLAINED: "complained",
    events.OPENED: "opened",
    events.CLICKED: "clicked",
    events.UNSUBSCRIBED: "unsubscribed",
}
CHARTED = ("delivered", "opened", "clicked")
TOP_LINKS = 10


@dataclass
class Figures:
    """Counts of one scope (everything, or one provider): METRICS, machine_opened, machine_clicked,
    unique_human_opens and unique_human_clicks (deliveries with a human open, a human click)."""

    counts: Counter = field(default_factory=Counter)

    def rates(self) -> dict[str, float | None]:
        """Shares of the delivered messages: unique human opens and clicks, bounces (of sent), complaints,
        unsubscribes; None while nothing was delivered."""
        delivered, sent = self.counts["delivered"], self.counts["sent"]

        def share(n: int, of: int) -> float | None:
            return round(n / of, 4) if of else None

        return {
            "open_rate": share(self.counts["unique_human_opens"], delivered),
            "click_rate": share(self.counts["unique_human_clicks"], delivered),
            "bounce_rate": share(self.counts["bounced"], sent),
            "complaint_rate": share(self.counts["complained"], delivered),
            "unsubscribe_rate": share(self.counts["unsubscribed"], delivered),
        }

    def as_dict(self) -> dict:
        return {**{m: self.counts[m] for m in METRICS}, **{k: self.counts[k] for k in _EXTRA}, **self.rates()}


_EXTRA = ("machine_opened", "machine_clicked", "unique_human_opens", "unique_human_clicks")
_UNIQUE = {"opened": "unique_human_opens", "clicked": "unique_human_clicks"}


@dataclass
class Report:
    since: dt.datetime
    until: dt.datetime
    total: Figures
    providers: dict[str, Figures]
    hourly: list[tuple[dt.datetime, dict[str, int]]]  # the 24 hours before ``until``
    daily: list[tuple[dt.date, dict[str, int]]]  # the 30 days up to ``until``
    top_links: list[tuple[str, int, int]]  # url, human clicks, unique human clickers

    def as_dict(self) -> dict:
        return {
            **self.total.as_dict(),
            "providers": {name: f.as_dict() for name, f in sorted(self.providers.items())},
            "hourly": [{"hour": h.isoformat(), **v} for h, v in self.hourly],
            "daily": [{"day": d.isoformat(), **v} for d, v in self.daily],
            "top_links": [{"url": u, "clicks": n, "unique": k} for u, n, k in self.top_links],
        }


def provider_names(found: list[sp.Group] | None = None) -> events.Providers:
    """A function from a recipient domain to its provider group's name (the sending policy's groups,
    or ``found``)."""
    if found is None:
        found = [groups.as_group(row) for row in groups.group_rows()]
    cache: dict[str, str] = {}

    def name(domain: str) -> str:
        if domain not in cache:
            cache[domain] = sp.match_group(found, domain, []).name
        return cache[domain]

    return name


class _Sums:
    """The report's figures as they are added up, from roll-up rows and from scanned events alike."""

    def __init__(self, until: dt.datetime) -> None:
        self.provider = provider_names()
        self.total, self.providers = Figures(), defaultdict(Figures)
        self.hours = [events.hour_of(until) - dt.timedelta(hours=h) for h in range(23, -1, -1)]
        self.days = [until.date() - dt.timedelta(days=d) for d in range(29, -1, -1)]
        self.hourly = {h: Counter() for h in self.hours}
        self.daily = {d: Counter() for d in self.days}

    def add(self, provider: str, metric: str, n: int, unique: int = 0) -> None:
        for f in (self.total, self.providers[provider]):
            f.counts[metric] += n
            if unique:
                f.counts[_UNIQUE[metric]] += unique

    def chart(self, hour: dt.datetime, metric: str, n: int, *, hourly: bool = True, daily: bool = True) -> None:
        if hourly and hour in self.hourly:
            self.hourly[hour][metric] += n
        if daily and hour.date() in self.daily:
            self.daily[hour.date()][metric] += n


def _scoped(model, since: dt.datetime, until: dt.datetime, scope: dict) -> list:
    """The conditions of a roll-up's rows for the messages received in [since, until) of the scope."""
    where = [model.received >= since, model.received < until]
    if scope["account_id"] is not None:
        where.append(model.account == scope["account_id"])
    if scope["stream"] is not None:
        where.append(model.stream == scope["stream"])
    return where


def _from_rollups(sums: _Sums, first: dt.datetime, last: dt.datetime, scope: dict) -> None:
    """Add the messages received in the whole hours [first, last): the whole days among them from
    EventDay (its rows grow with the days, not with the messages), the hours either side from EventCount."""
    day_start = events.day_of(first) + (dt.timedelta(days=1) if first != events.day_of(first) else dt.timedelta())
    day_end = events.day_of(last)
    if day_start >= day_end:
        _from_hours(sums, first, last, scope)
        return
    _from_days(sums, day_start, day_end, scope)
    if first < day_start:
        _from_hours(sums, first, day_start, scope)
    if day_end < last:
        _from_hours(sums, day_end, last, scope)


def _add_totals(sums: _Sums, model, where: list) -> None:
    count, uniques = fn.SUM(model.count), fn.SUM(model.uniques)
    totals = (
        model.select(model.provider, model.metric, count, uniques)
        .where(*where)
        .group_by(model.provider, model.metric)
        .having((count != 0) | (uniques != 0))
        .tuples()
    )
    for provider, metric, n, unique in totals:
        sums.add(provider, metric, n, unique)


def _chart_range(sums: _Sums) -> tuple[dt.datetime, dt.datetime]:
    return dt.datetime.combine(sums.days[0], dt.time()), dt.datetime.combine(sums.days[-1], dt.time()) + dt.timedelta(
        days=1
    )


def _from_hours(sums: _Sums, since: dt.datetime, until: dt.datetime, scope: dict) -> None:
    """Add the EventCount rows of the messages received in these whole hours."""
    where = _scoped(EventCount, since, until, scope)
    _add_totals(sums, EventCount, where)
    first, end = _chart_range(sums)
    charted = (
        EventCount.select(EventCount.hour, EventCount.metric, fn.SUM(EventCount.count))
        .where(*where, EventCount.metric.in_(CHARTED), EventCount.hour >= first, EventCount.hour < end)
        .group_by(EventCount.hour, EventCount.metric)
        .tuples()
    )
    for hour, metric, n in charted:
        sums.chart(hour, metric, n)


def _from_days(sums: _Sums, since: dt.datetime, until: dt.datetime, scope: dict) -> None:
    """Add the messages received in these whole days: totals and the daily chart from EventDay, the
    last 24 hours' chart from the EventCount rows of those hours (index ``(hour, metric)``)."""
    where = _scoped(EventDay, since, until, scope)
    first, end = _chart_range(sums)
    # One pass over the range's rows for both the totals and the daily chart.
    rows = (
        EventDay.select(
            EventDay.provider, EventDay.metric, EventDay.day, fn.SUM(EventDay.count), fn.SUM(EventDay.uniques)
        )
        .where(*where)
        .group_by(EventDay.provider, EventDay.metric, EventDay.day)
        .tuples()
    )
    for provider, metric, day, n, unique in rows:
        if n or unique:
            sums.add(provider, metric, n, unique)
        if metric in CHARTED and first <= day < end:
            sums.chart(day, metric, n, hourly=False)
    by_hour = (
        EventCount.select(EventCount.hour, EventCount.metric, fn.SUM(EventCount.count))
        .where(
            EventCount.hour >= sums.hours[0],
            EventCount.hour <= sums.hours[-1],
            EventCount.metric.in_(CHARTED),
            *_scoped(EventCount, since, until, scope),
        )
        .group_by(EventCount.hour, EventCount.metric)
        .tuples()
    )
    for hour, metric, n in by_hour:
        sums.chart(hour, metric, n, daily=False)


def _message_scope(since: dt.datetime, until: dt.datetime, scope: dict) -> list:
    where = [Message.received_at >= since, Message.received_at < until, Message.direction == "outbound"]
    if scope["account_id"] is not None:
        where.append(Message.account == scope["account_id"])
    if scope["stream"] is not None:
        where.append(Message.stream == scope["stream"])
    return where


def _from_events(sums: _Sums, since: dt.datetime, until: dt.datetime, scope: dict) -> None:
    """Add the deliveries and events of the messages received in part of an hour (the range's ends,
    which the hourly roll-up cannot split), counted as the roll-up counts them."""
    where = _message_scope(since, until, scope)
    sent = (
        Delivery.select(Delivery.domain, fn.COUNT(Delivery.id))
        .join(Message)
        .where(*where, Delivery.status.not_in((SUPPRESSED, CANCELLED)))
        .group_by(Delivery.domain)
        .tuples()
    )
    for domain, n in sent:
        sums.add(sums.provider(domain.lower()), "sent", n)
    humans: dict[str, set] = defaultdict(set)  # provider: the (message, recipient, metric) with a human one
    rows = (
        Event.select(Event.type, Event.recipient, Event.message, Event.at, Event.details)
        .join(Message)
        .where(*where, Event.type.in_(list(_EVENT_METRICS)))
        .tuples()
        .iterator()
    )
    for type_, recipient, message_id, at, details in rows:
        metric, provider = _EVENT_METRICS[type_], sums.provider(events.domain_of(recipient))
        if type_ in (events.OPENED, events.CLICKED):
            if json.loads(details or "{}").get("machine"):
                sums.add(provider, f"machine_{metric}", 1)
                continue
            humans[provider].add((message_id, recipient.lower(), metric))
        sums.add(provider, metric, 1)
        if metric in CHARTED:
            sums.chart(events.hour_of(at), metric, 1)
    for provider, who in humans.items():
        for metric in _UNIQUE:
            sums.add(provider, metric, 0, sum(1 for w in who if w[2] == metric))


def _top_links(since: dt.datetime, until: dt.datetime, scope: dict) -> list[tuple[str, int, int]]:
    """The links clicked most by humans, with their unique clickers: the messages received on the whole
    days of the range from LinkDay, those of the parts of a day at either end from their clicks."""
    links: Counter = Counter()
    clickers: Counter = Counter()
    day_start = events.day_of(since) + (dt.timedelta(days=1) if since != events.day_of(since) else dt.timedelta())
    day_end = events.day_of(until)
    edges = [(since, until)]
    if day_start < day_end:
        rows = (
            # Grouped by the hash alone: sorting by the URLs themselves took twice as long.
            LinkDay.select(fn.MIN(LinkDay.url), fn.SUM(LinkDay.count), fn.SUM(LinkDay.uniques))
            .where(*_scoped(LinkDay, day_start, day_end, scope))
            .group_by(LinkDay.link)
            .tuples()
        )
        for url, n, unique in rows:
            links[url] += n
            clickers[url] += unique
        edges = [(a, b) for a, b in ((since, day_start), (day_end, until)) if a < b]
    for a, b in edges:
        for url, (n, unique) in _clicked(a, b, scope).items():
            links[url] += n
            clickers[url] += unique
    return [(url, n, clickers[url]) for url, n in links.most_common(TOP_LINKS)]


def _clicked(since: dt.datetime, until: dt.datetime, scope: dict) -> dict[str, tuple[int, int]]:
    """Each link's human clicks and unique clickers among the messages received in [since, until):
    their clicks after ``since`` (a range of the event index ``(type, at)``: a message's clicks come
    after it was received), then their messages' scope."""
    counted: dict[str, list] = defaultdict(lambda: [0, set()])
    # A CROSS JOIN makes SQLite start from the clicks instead of every message of the range
    # (PostgreSQL plans it as the inner join it is).
    rows = (
        Event.select(Event.message, Event.recipient, Event.details)
        .join(Message, JOIN.CROSS)
        .where(
            Event.type == events.CLICKED,
            Event.at >= since,
            Event.message == Message.id,
            *_message_scope(since, until, scope),
        )
        .tuples()
        .iterator()
    )
    for message_id, recipient, details in rows:
        extra = json.loads(details or "{}")
        if not extra.get("machine"):
            row = counted[extra.get("url", "")]
            row[0] += 1
            row[1].add((message_id, recipient.lower()))
    return {url: (n, len(who)) for url, (n, who) in counted.items()}


def report(
    since: dt.datetime, until: dt.datetime, *, account_id: int | None = None, stream: str | None = None
) -> Report:
    """Figures of the outbound messages received from ``since`` to ``until`` (of one account, one stream):
    the whole hours from the roll-up, the parts of an hour at either end from their events."""
    scope = {"account_id": account_id, "stream": stream}
    sums = _Sums(until)
    first = events.hour_of(since) + (dt.timedelta(hours=1) if since != events.hour_of(since) else dt.timedelta())
    last = events.hour_of(until)
    if first >= last:
        _from_events(sums, since, until, scope)
    else:
        _from_rollups(sums, first, last, scope)
        if since < first:
            _from_events(sums, since, first, scope)
        if last < until:
            _from_events(sums, last, until, scope)
    return Report(
        since,
        until,
        sums.total,
        dict(sums.providers),
        [(h, {m: sums.hourly[h][m] for m in CHARTED}) for h in sums.hours],
        [(d, {m: sums.daily[d][m] for m in CHARTED}) for d in sums.days],
        _top_links(since, until, scope),
    )


CSV_COLUMNS = (
    "scope",
    "name",
    *METRICS,
    "machine_opened",
    "machine_clicked",
    "unique_human_opens",
    "unique_human_clicks",
    "open_rate",
    "click_rate",
    "bounce_rate",
    "complaint_rate",
    "unsubscribe_rate",
)


def csv_rows(found: Report) -> list[list]:
    """The report as CSV rows: the totals, then one row per provider, then one per day."""
    rows: list[list] = [list(CSV_COLUMNS)]
    scopes = [("total", "all", found.total), *(("provider", n, f) for n, f in sorted(found.providers.items()))]
    for scope, name, figures in scopes:
        values = figures.as_dict()
        rows.append([scope, name, *(values[c] for c in CSV_COLUMNS[2:])])
    for day, values in found.daily:
        rows.append(
            [
                "day",
                day.isoformat(),
                "",
                values["delivered"],
                "",
                "",
                values["opened"],
                values["clicked"],
                *([""] * (len(CSV_COLUMNS) - 8)),
            ]
        )
    return rows
