"""The events layer: every outcome of a message, as an Event row, then to whoever listens.

An outcome (accepted, delivered, bounced, …) is recorded here by the code that makes it, inside
that code's own transaction, so the Event row and the outcome are committed together or not at
all. Once the transaction commits, the events are handed to the subscribers (``subscribe``): the
queue for the appliance's own new mail, the alert center for failures (appliance/followups.py).
Nothing here sends mail, and nothing below this layer imports anything that does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from peewee import EXCLUDED, fn

from . import clock, db
from . import models as m
from .models import Delivery, Event, EventCount, EventDay, GroupedCount, LinkDay, Message

log = logging.getLogger(__name__)

ACCEPTED = "accepted"  # intake stored the message (recipient "")
DELIVERED = "delivered"  # the remote server took it (2xx)
DEFERRED = "deferred"  # a temporary failure (4xx, network): retried later
BOUNCED = "bounced"  # a permanent failure (5xx), in the session or reported later
FAILED = "failed"  # temporary failures until the give-up age
SUPPRESSED = "suppressed"  # the recipient is on the suppression list: not sent
HELD = "held"  # kept back by a quota, the reputation guard or an admin
RELEASED = "released"  # held mail let go (an admin, or a quota window that opened)
CANCELLED = "cancelled"  # an admin cancelled it for good
COMPLAINED = "complained"  # a feedback-loop report: the recipient called it spam
OPENED = "opened"  # the open pixel of the recipient's copy was fetched
CLICKED = "clicked"  # a tracked link of the recipient's copy was followed (details: the url)
UNSUBSCRIBED = "unsubscribed"  # the recipient left the broadcast stream of the sending domain
TYPES = (
    ACCEPTED,
    DELIVERED,
    DEFERRED,
    BOUNCED,
    FAILED,
    SUPPRESSED,
    HELD,
    RELEASED,
    CANCELLED,
    COMPLAINED,
    OPENED,
    CLICKED,
    UNSUBSCRIBED,
)
# The appliance's own bookkeeping, not an outcome: a batch of a list send's members became deliveries
# (appliance/fanout.py; details: list, after, last, added, skipped). Not in TYPES: no log line, no webhook.
EXPANDED = "expanded"


class Occurred(NamedTuple):
    """One event as its subscribers get it."""

    message_id: str
    type: str
    recipient: str
    at: dt.datetime
    details: dict[str, Any]


Subscriber = Callable[[list[Occurred]], None]
_subscribers: list[tuple[frozenset[str], Subscriber]] = []
_writers: list[tuple[frozenset[str], Subscriber]] = []  # called inside the events' transaction


def subscribe(types: Iterable[str], subscriber: Subscriber) -> None:
    """Hand committed events of these types to ``subscriber`` (a list per transaction)."""
    _subscribers.append((frozenset(types), subscriber))


def subscribe_within(types: Iterable[str], subscriber: Subscriber) -> None:
    """Hand events of these types to ``subscriber`` inside the transaction that stores them, after
    their rows (what it writes commits with them, or not at all). It runs in a savepoint of its own:
    if it fails, its writes are undone and the events are stored all the same."""
    _writers.append((frozenset(types), subscriber))


def unsubscribe(subscriber: Subscriber) -> None:
    _subscribers[:] = [(t, s) for t, s in _subscribers if s is not subscriber]
    _writers[:] = [(t, s) for t, s in _writers if s is not subscriber]


def unsubscribe_all() -> None:
    """Forget every subscriber (create_app binds a fresh set for its settings)."""
    _subscribers.clear()
    _writers.clear()


def occurred(
    message_id: str, type_: str, recipient: str = "", at: dt.datetime | None = None, **details: Any
) -> Occurred:
    """Build an event (``record`` stores it)."""
    return Occurred(message_id, type_, recipient, at or clock.now(), details)


def record(events: list[Occurred]) -> None:
    """Store events inside the caller's transaction; they reach the subscribers after its commit."""
    if not events:
        return
    _roll_up(events)
    db.insert_rows(
        Event,
        [
            {
                "message": e.message_id,
                "recipient": e.recipient,
                "type": e.type,
                "at": e.at,
                "details": json.dumps(e.details, separators=(",", ":")) if e.details else "{}",
            }
            for e in events
        ],
    )
    for types, subscriber in list(_writers):
        wanted = [e for e in events if e.type in types]
        if wanted:
            try:
                with db.database.atomic():  # a savepoint: the subscriber's failure undoes only its writes
                    subscriber(wanted)
            except Exception:  # noqa: BLE001 — the events are stored; what the subscriber derives is not
                log.exception("event subscriber %s failed", getattr(subscriber, "__name__", subscriber))
    if _subscribers:
        db.after_commit(_dispatch, events)


def _dispatch(events: list[Occurred]) -> None:
    for types, subscriber in list(_subscribers):
        wanted = [e for e in events if e.type in types]
        if not wanted:
            continue
        try:
            subscriber(wanted)
        except Exception:  # the events are stored; one subscriber's failure must not stop the others
            log.exception("event subscriber %s failed", getattr(subscriber, "__name__", subscriber))


def timeline(message_id: str) -> list[dict[str, Any]]:
    """A message's events, oldest first: each with ``type``, ``recipient``, ``at`` and ``details``;
    opens and clicks also with ``machine``, clicks with ``url``."""
    rows = Event.select().where(Event.message == message_id).order_by(Event.at, Event.id)
    found = []
    for e in rows:
        entry = {"type": e.type, "recipient": e.recipient, "at": e.at, "details": json.loads(e.details or "{}")}
        if e.type in (OPENED, CLICKED):
            entry["machine"] = bool(entry["details"].get("machine"))
        if e.type == CLICKED:
            entry["url"] = entry["details"].get("url", "")
        found.append(entry)
    return found


# -- the analytics' hourly roll-up (EventCount, docs/analytics.md) -------------------------------
COUNTED = (DELIVERED, BOUNCED, COMPLAINED, OPENED, CLICKED, UNSUBSCRIBED)  # the analytics' metrics
# ACCEPTED adds the sent (EXPANDED: those of a list send's batch), CANCELLED takes one off
_ROLLED = frozenset((*COUNTED, ACCEPTED, EXPANDED, CANCELLED))
_NOT_SENT = (m.SUPPRESSED, m.CANCELLED)  # deliveries that never go out are not "sent"
_CHUNK = 500  # rows per upsert statement (9 parameters each, under SQLite's limit)

Fact = tuple[dt.datetime, int, str]  # a message's received hour, account id (0: none), stream
Key = tuple[dt.datetime, int, str, str, str, dt.datetime]  # EventCount's unique index, in its order
Providers = Callable[[str], str]  # a recipient domain's provider group
_providers: list[Callable[[], Providers]] = []  # what reads the groups (create_app: analytics.provider_names)


def name_providers(reader: Callable[[], Providers]) -> None:
    """Name the roll-up's provider groups with ``reader()``, called once per transaction (the groups
    are policy, a layer above this one)."""
    _providers[:] = [reader]


def hour_of(at: dt.datetime) -> dt.datetime:
    return at.replace(minute=0, second=0, microsecond=0)


def day_of(at: dt.datetime) -> dt.datetime:
    return at.replace(hour=0, minute=0, second=0, microsecond=0)


def link_hash(url: str) -> str:
    """LinkDay.link: the URL's SHA-256, hex."""
    return hashlib.sha256(url.encode("utf-8", "surrogatepass")).hexdigest()


def domain_of(recipient: str) -> str:
    """The recipient's domain as Delivery.domain has it (policy.acceptance.split_address)."""
    return recipient.rpartition("@")[2].lower().rstrip(".")


class _Tally:
    """Increments of EventCount rows: (count, uniques) per key; and of GroupedCount rows, for the
    messages filed under a campaign or a list (``groups``: each message's (kind, group) pairs)."""

    def __init__(self, providers: Providers, groups: dict[str, list[tuple[str, str]]] | None = None) -> None:
        self.providers = providers
        self.rows: dict[Key, list[int]] = defaultdict(lambda: [0, 0])
        self.groups = groups or {}
        self.grouped: dict[tuple[str, str, str, dt.datetime], list[int]] = defaultdict(lambda: [0, 0])
        # LinkDay increments: (received day, account, stream, link hash) -> [clicks, uniques, url]
        self.links: dict[tuple[dt.datetime, int, str, str], list] = {}

    def add(
        self, fact: Fact, domain: str, metric: str, hour: dt.datetime, n: int = 1, unique: int = 0, message_id: str = ""
    ) -> None:
        row = self.rows[(*fact, self.providers(domain), metric, hour)]
        row[0] += n
        row[1] += unique
        for kind, group in self.groups.get(message_id, ()):
            grouped = self.grouped[(kind, group, metric, hour)]
            grouped[0] += n
            grouped[1] += unique

    def event(
        self, fact: Fact, message_id: str, type_: str, recipient: str, at: dt.datetime, details: dict, seen: set
    ) -> None:
        """Count one event of ``_ROLLED`` but ACCEPTED; ``seen`` holds the (message, recipient, type)
        that already have a human open or click, and gains this one's."""
        if type_ == CANCELLED:
            self.add(fact, domain_of(recipient), "sent", fact[0], -1, message_id=message_id)
            return
        metric, unique = type_, 0
        if type_ in (OPENED, CLICKED):
            if details.get("machine"):
                metric = f"machine_{type_}"
            else:
                who = (message_id, recipient.lower(), type_)
                unique = int(who not in seen)
                seen.add(who)
                if type_ == CLICKED:
                    self.link(fact, message_id, recipient, details.get("url", ""), seen)
        self.add(fact, domain_of(recipient), metric, hour_of(at), 1, unique, message_id)

    def link(self, fact: Fact, message_id: str, recipient: str, url: str, seen: set) -> None:
        """Count a human click of ``url``; ``seen`` holds the (message, recipient, "link", url) already clicked."""
        who = (message_id, recipient.lower(), "link", url)
        key = (day_of(fact[0]), fact[1], fact[2], link_hash(url))
        row = self.links.setdefault(key, [0, 0, url])
        row[0] += 1
        row[1] += int(who not in seen)
        seen.add(who)

    def write_grouped(self) -> None:
        """Add the increments to GroupedCount, as ``write`` does to EventCount."""
        names = ("kind", "group", "metric", "hour")
        rows = [
            {**dict(zip(names, key, strict=True)), "count": c, "uniques": u}
            for key, (c, u) in sorted(self.grouped.items())
            if c or u
        ]
        target = [getattr(GroupedCount, n) for n in names]
        for start in range(0, len(rows), _CHUNK):
            (
                GroupedCount.insert_many(rows[start : start + _CHUNK])
                .on_conflict(
                    conflict_target=target,
                    update={
                        GroupedCount.count: GroupedCount.count + EXCLUDED.count,
                        GroupedCount.uniques: GroupedCount.uniques + EXCLUDED.uniques,
                    },
                )
                .execute()
            )

    def write(self, fresh: bool = False, days: bool = True) -> int:
        """Add the increments to EventCount and (``days``) to EventDay and LinkDay: one upsert per
        chunk, rows in key order (so that two PostgreSQL transactions lock shared rows in the same
        order); into emptied tables (``fresh``) as plain inserts. Return the EventCount rows written."""
        written = _upsert(EventCount, (*_NAMES, "hour"), self.rows, fresh)
        if days:
            _upsert(EventDay, (*_NAMES, "day"), _by_day(self.rows.items()), fresh)
            self.write_links(fresh)
        return written

    def write_links(self, fresh: bool = False) -> None:
        """Add the link increments to LinkDay, as ``write`` does."""
        links = {key: (c, u) for key, (c, u, _) in self.links.items()}
        urls = {key: {"url": url} for key, (_, _, url) in self.links.items()}
        _upsert(LinkDay, ("received", "account", "stream", "link"), links, fresh, urls)


_NAMES = ("received", "account", "stream", "provider", "metric")  # the roll-ups' keys but their time of events


def _by_day(hourly: Iterable[tuple[Key, Any]]) -> dict[tuple, list[int]]:
    """EventCount's (key, (count, uniques)) added up by day: EventDay's."""
    by_day: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
    for (received, account, stream, provider, metric, hour), (c, u) in hourly:
        row = by_day[(day_of(received), account, stream, provider, metric, day_of(hour))]
        row[0] += c
        row[1] += u
    return by_day


def _upsert(model, names: tuple[str, ...], counts: dict, fresh: bool, extra: dict | None = None) -> int:
    """Add ``counts`` ((count, uniques) per key of the columns ``names``) to a roll-up table."""
    rows = [
        {**dict(zip(names, key, strict=True)), **(extra[key] if extra else {}), "count": c, "uniques": u}
        for key, (c, u) in sorted(counts.items())
        if c or u
    ]
    if fresh:
        for start in range(0, len(rows), 10 * _CHUNK):
            db.insert_rows(model, rows[start : start + 10 * _CHUNK])
        return len(rows)
    target = [getattr(model, n) for n in names]
    for start in range(0, len(rows), _CHUNK):
        (
            model.insert_many(rows[start : start + _CHUNK])
            .on_conflict(
                conflict_target=target,
                update={model.count: model.count + EXCLUDED.count, model.uniques: model.uniques + EXCLUDED.uniques},
            )
            .execute()
        )
    return len(rows)


def _roll_up(events: list[Occurred]) -> None:
    """Add the events of outbound messages to EventCount, and of those filed under a campaign or a list
    to GroupedCount (in record's transaction, before the Event rows)."""
    wanted = [e for e in events if e.type in _ROLLED]
    if not wanted:
        return
    facts: dict[str, Fact] = {}
    groups: dict[str, list[tuple[str, str]]] = {}
    for mid, received, account, stream, campaign, mailing_list in (
        Message.select(
            Message.id, Message.received_at, Message.account, Message.stream, Message.campaign, Message.mailing_list
        )
        .where(Message.id.in_(list({e.message_id for e in wanted})), Message.direction == "outbound")
        .tuples()
    ):
        facts[mid] = (hour_of(received), account or 0, stream)
        filed = [(kind, group) for kind, group in (("campaign", campaign), ("list", mailing_list)) if group]
        if filed:
            groups[mid] = filed
    wanted = [e for e in wanted if e.message_id in facts]
    if not wanted:
        return
    if not _providers:
        raise RuntimeError("events.name_providers was not called (create_app does)")
    tally = _Tally(_providers[0](), groups)
    accepted = [e.message_id for e in wanted if e.type == ACCEPTED]
    if accepted:
        sent = (
            Delivery.select(Delivery.message, Delivery.domain, fn.COUNT(Delivery.id))
            .where(Delivery.message.in_(accepted), Delivery.status.not_in(_NOT_SENT))
            .group_by(Delivery.message, Delivery.domain)
            .tuples()
        )
        for mid, domain, n in sent:
            tally.add(facts[mid], domain.lower(), "sent", facts[mid][0], n, message_id=mid)
    for e in wanted:
        if e.type == EXPANDED:
            batch = (
                Delivery.select(Delivery.domain, fn.COUNT(Delivery.id))
                .where(
                    Delivery.message == e.message_id,
                    Delivery.rcpt > e.details["after"],
                    Delivery.rcpt <= e.details["last"],
                    Delivery.status.not_in(_NOT_SENT),
                )
                .group_by(Delivery.domain)
                .tuples()
            )
            for domain, n in batch:
                tally.add(
                    facts[e.message_id], domain.lower(), "sent", facts[e.message_id][0], n, message_id=e.message_id
                )
    seen = _human_before({e.message_id for e in wanted if e.type in (OPENED, CLICKED) and not e.details.get("machine")})
    for e in wanted:
        if e.type not in (ACCEPTED, EXPANDED):
            tally.event(facts[e.message_id], e.message_id, e.type, e.recipient, e.at, e.details, seen)
    tally.write()
    tally.write_grouped()


def _human_before(message_ids: set[str]) -> set[tuple[str, str, str]]:
    """The (message, recipient, type) of these messages' stored human opens and clicks. On PostgreSQL
    their Delivery rows are locked first, so that two first opens of one copy in concurrent
    transactions wait for each other and the second finds the first."""
    if not message_ids:
        return set()
    ids = sorted(message_ids)
    if not db.is_sqlite():
        list(Delivery.select(Delivery.id).where(Delivery.message.in_(ids)).order_by(Delivery.id).for_update())
    rows = (
        Event.select(Event.message, Event.recipient, Event.type, Event.details)
        .where(Event.message.in_(ids), Event.type.in_((OPENED, CLICKED)))
        .tuples()
    )
    seen: set = set()
    for mid, recipient, type_, details in rows:
        extra = json.loads(details or "{}")
        if not extra.get("machine"):
            seen.add((mid, recipient.lower(), type_))
            if type_ == CLICKED:
                seen.add((mid, recipient.lower(), "link", extra.get("url", "")))
    return seen


def rebuild_rollups(providers: Providers, days: bool = True) -> int:
    """Count EventCount and (``days``) EventDay and LinkDay anew from the Message, Delivery and Event
    rows, as ``record`` keeps them (migration 0014's backfill of EventCount, bench/analytics.py's fill);
    return the EventCount rows written."""
    for model in (EventCount, EventDay, LinkDay) if days else (EventCount,):
        model.delete().execute()
    tally = _Tally(providers)
    sent = (
        Delivery.select(Message.received_at, Message.account, Message.stream, Delivery.domain)
        .join(Message)
        .where(Message.direction == "outbound", Delivery.status.not_in(_NOT_SENT))
        .tuples()
        .iterator()
    )
    for received, account, stream, domain in sent:
        hour = hour_of(received)
        tally.add((hour, account or 0, stream), domain.lower(), "sent", hour)
    rows = (
        Event.select(
            Event.message,
            Event.type,
            Event.recipient,
            Event.at,
            Event.details,
            Message.received_at,
            Message.account,
            Message.stream,
        )
        .join(Message)
        .where(Message.direction == "outbound", Event.type.in_(COUNTED))
        .order_by(Event.id)
        .tuples()
        .iterator()
    )
    seen: set = set()
    for mid, type_, recipient, at, details, received, account, stream in rows:
        extra = json.loads(details or "{}") if type_ in (OPENED, CLICKED) else {}
        tally.event((hour_of(received), account or 0, stream), mid, type_, recipient, at, extra, seen)
    return tally.write(fresh=True, days=days)


def rebuild_day_rollups() -> int:
    """Fill EventDay from EventCount (which holds the counts of messages purged since) and LinkDay
    from the clicks still stored (migration 0026's backfill); return the EventDay rows written."""
    EventDay.delete().execute()
    LinkDay.delete().execute()
    fields = [getattr(EventCount, n) for n in (*_NAMES, "hour")]
    hourly = (
        (tuple(row[:6]), row[6:])
        for row in EventCount.select(*fields, EventCount.count, EventCount.uniques).tuples().iterator()
    )
    written = _upsert(EventDay, (*_NAMES, "day"), _by_day(hourly), fresh=True)
    tally = _Tally(lambda domain: "")
    clicks = (
        Event.select(
            Event.message, Event.recipient, Event.details, Message.received_at, Message.account, Message.stream
        )
        .join(Message)
        .where(Message.direction == "outbound", Event.type == CLICKED)
        .order_by(Event.id)
        .tuples()
        .iterator()
    )
    seen: set = set()
    for mid, recipient, details, received, account, stream in clicks:
        extra = json.loads(details or "{}")
        if not extra.get("machine"):
            tally.link((hour_of(received), account or 0, stream), mid, recipient, extra.get("url", ""), seen)
    tally.write_links(fresh=True)
    return written
