"""Analytics: what became of the messages received in a date range, per stream and account; rates
over human opens and clicks only (machine ones are counted apart), charts by hour and by day, the
links clicked most, and the same figures per recipient provider (the dashboard's analytics page,
its CSV export and `appliance stats` read the same)."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from peewee import fn

from . import events
from .models import CANCELLED, SUPPRESSED, Delivery, Event, Message
from .policy import acceptance, groups
from .policy import sending as sp

METRICS = ("sent", "delivered", "bounced", "complained", "opened", "clicked", "unsubscribed")
_EVENT_METRICS = {events.DELIVERED: "delivered", events.BOUNCED: "bounced", events.COMPLAINED: "complained",
                  events.OPENED: "opened", events.CLICKED: "clicked", events.UNSUBSCRIBED: "unsubscribed"}
CHARTED = ("delivered", "opened", "clicked")
TOP_LINKS = 10


@dataclass
class Figures:
    """Counts of one scope (everything, or one provider), and the unique human openers and clickers."""

    counts: Counter = field(default_factory=Counter)  # METRICS, plus machine_opened, machine_clicked
    openers: set = field(default_factory=set)  # (message, recipient) with a human open
    clickers: set = field(default_factory=set)

    def rates(self) -> dict[str, float | None]:
        """Shares of the delivered messages: unique human opens and clicks, bounces (of sent), complaints,
        unsubscribes; None while nothing was delivered."""
        delivered, sent = self.counts["delivered"], self.counts["sent"]

        def share(n: int, of: int) -> float | None:
            return round(n / of, 4) if of else None

        return {"open_rate": share(len(self.openers), delivered), "click_rate": share(len(self.clickers), delivered),
                "bounce_rate": share(self.counts["bounced"], sent),
                "complaint_rate": share(self.counts["complained"], delivered),
                "unsubscribe_rate": share(self.counts["unsubscribed"], delivered)}

    def as_dict(self) -> dict:
        return {**{m: self.counts[m] for m in METRICS}, "machine_opened": self.counts["machine_opened"],
                "machine_clicked": self.counts["machine_clicked"], "unique_human_opens": len(self.openers),
                "unique_human_clicks": len(self.clickers), **self.rates()}


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


def _provider_names():
    """A function from a recipient domain to its provider group's name (the sending policy's groups)."""
    found = [groups.as_group(row) for row in groups.group_rows()]
    cache: dict[str, str] = {}

    def name(domain: str) -> str:
        if domain not in cache:
            cache[domain] = sp.match_group(found, domain, []).name
        return cache[domain]

    return name


def report(since: dt.datetime, until: dt.datetime, *, account_id: int | None = None,
           stream: str | None = None) -> Report:
    """Figures of the outbound messages received from ``since`` to ``until`` (of one account, one stream)."""
    scope = [Message.received_at >= since, Message.received_at < until, Message.direction == "outbound"]
    if account_id is not None:
        scope.append(Message.account == account_id)
    if stream is not None:
        scope.append(Message.stream == stream)
    provider = _provider_names()
    total, providers = Figures(), defaultdict(Figures)

    sent = (Delivery.select(Delivery.domain, fn.COUNT(Delivery.id)).join(Message)
            .where(*scope, Delivery.status.not_in((SUPPRESSED, CANCELLED))).group_by(Delivery.domain).tuples())
    for domain, n in sent:
        total.counts["sent"] += n
        providers[provider(domain)].counts["sent"] += n

    hours = [until.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=h) for h in range(23, -1, -1)]
    days = [until.date() - dt.timedelta(days=d) for d in range(29, -1, -1)]
    hourly = {h: Counter() for h in hours}
    daily = {d: Counter() for d in days}
    links: Counter = Counter()
    link_clickers: dict[str, set] = defaultdict(set)
    rows = (Event.select(Event.type, Event.recipient, Event.message, Event.at, Event.details).join(Message)
            .where(*scope, Event.type.in_(list(_EVENT_METRICS))).tuples().iterator())
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
    return Report(
        since, until, total, dict(providers),
        [(h, {m: hourly[h][m] for m in CHARTED}) for h in hours],
        [(d, {m: daily[d][m] for m in CHARTED}) for d in days],
        [(url, n, len(link_clickers[url])) for url, n in links.most_common(TOP_LINKS)],
    )


CSV_COLUMNS = ("scope", "name", *METRICS, "machine_opened", "machine_clicked", "unique_human_opens",
               "unique_human_clicks", "open_rate", "click_rate", "bounce_rate", "complaint_rate", "unsubscribe_rate")


def csv_rows(found: Report) -> list[list]:
    """The report as CSV rows: the totals, then one row per provider, then one per day."""
    rows: list[list] = [list(CSV_COLUMNS)]
    scopes = [("total", "all", found.total), *(("provider", n, f) for n, f in sorted(found.providers.items()))]
    for scope, name, figures in scopes:
        values = figures.as_dict()
        rows.append([scope, name, *(values[c] for c in CSV_COLUMNS[2:])])
    for day, values in found.daily:
        rows.append(["day", day.isoformat(), "", values["delivered"], "", "", values["opened"], values["clicked"],
                     *([""] * (len(CSV_COLUMNS) - 8))])
    return rows
