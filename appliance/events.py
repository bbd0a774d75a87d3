"""The events layer: every outcome of a message, as an Event row, then to whoever listens.

An outcome (accepted, delivered, bounced, …) is recorded here by the code that makes it, inside
that code's own transaction, so the Event row and the outcome are committed together or not at
all. Once the transaction commits, the events are handed to the subscribers (``subscribe``): the
queue for the appliance's own new mail, the alert center for failures (appliance/followups.py).
Nothing here sends mail, and nothing below this layer imports anything that does.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from . import clock, db
from .models import Event

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
TYPES = (ACCEPTED, DELIVERED, DEFERRED, BOUNCED, FAILED, SUPPRESSED, HELD, RELEASED, CANCELLED, COMPLAINED,
         OPENED, CLICKED, UNSUBSCRIBED)


class Occurred(NamedTuple):
    """One event as its subscribers get it."""

    message_id: str
    type: str
    recipient: str
    at: dt.datetime
    details: dict[str, Any]


Subscriber = Callable[[list[Occurred]], None]
_subscribers: list[tuple[frozenset[str], Subscriber]] = []


def subscribe(types: Iterable[str], subscriber: Subscriber) -> None:
    """Hand committed events of these types to ``subscriber`` (a list per transaction)."""
    _subscribers.append((frozenset(types), subscriber))


def unsubscribe(subscriber: Subscriber) -> None:
    _subscribers[:] = [(t, s) for t, s in _subscribers if s is not subscriber]


def unsubscribe_all() -> None:
    """Forget every subscriber (create_app binds a fresh set for its settings)."""
    _subscribers.clear()


def occurred(message_id: str, type_: str, recipient: str = "", at: dt.datetime | None = None,
             **details: Any) -> Occurred:
    """Build an event (``record`` stores it)."""
    return Occurred(message_id, type_, recipient, at or clock.now(), details)


def record(events: list[Occurred]) -> None:
    """Store events inside the caller's transaction; they reach the subscribers after its commit."""
    if not events:
        return
    db.insert_rows(Event, [
        {"message": e.message_id, "recipient": e.recipient, "type": e.type, "at": e.at,
         "details": json.dumps(e.details, separators=(",", ":")) if e.details else "{}"}
        for e in events
    ])
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
