"""Outbound delivery as a checklist of named steps: route → pace → sign → send → record (DESIGN §2.7–2.8).

Called by queue workers with rows they have claimed; never on the SMTP event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from itertools import groupby

from .. import clock, db
from ..models import Claimed, Message, MessageBody
from .pace import Gate
from .record import Outcome, record_many
from .route import RouteError, route
from .send import Peer, Session, SessionError
from .sign import outgoing

MESSAGES_PER_SESSION = 100  # then QUIT and let the next task open a fresh session


def _outcomes(rows: list[Claimed], replies, peer: Peer, started, t0: float) -> list[Outcome]:
    duration = int((time.monotonic() - t0) * 1000)
    return [Outcome(d, reply, peer, started, duration) for d, reply in zip(rows, replies, strict=True)]


def _contents(message_ids: set[str]) -> dict[str, tuple[str, bytes]]:
    """Return each message's envelope sender and stored bytes, read in one query."""
    query = (Message.select(Message.id, Message.mail_from, MessageBody.data)
             .join(MessageBody, on=(MessageBody.message == Message.id))
             .where(Message.id.in_(list(message_ids))).tuples())
    return {message_id: (mail_from, bytes(data)) for message_id, mail_from, data in query}


def deliver(rows: list[Claimed], settings: dict, more: Callable[[], list[Claimed]]) -> None:
    """Deliver claimed rows of one destination domain, then whatever ``more`` claims next over
    the same session; record every outcome.

    Outcomes go to the process's writer without waiting for each commit (the rows stay leased
    meanwhile, so nothing else takes them); the session's outcomes are awaited before returning.
    """
    recorded: list[Future] = []

    def record_later(group: list[Claimed], replies, peer: Peer, started, t0: float) -> None:
        outcomes = _outcomes(group, replies, peer, started, t0)
        recorded.append(db.write_many(record_many, (outcomes, settings)))

    try:
        _deliver(rows, settings, more, record_later)
    finally:
        for future in recorded:
            future.result()


def _deliver(rows: list[Claimed], settings: dict, more: Callable[[], list[Claimed]], record_later) -> None:
    started, t0 = clock.now(), time.monotonic()
    try:
        path = route(settings, rows[0].domain)
    except RouteError as exc:
        for _, group in groupby(rows, key=lambda d: d.message_id):
            group = list(group)
            record_later(group, [exc.reply] * len(group), Peer(), started, t0)
        return

    gate = Gate(settings, rows[0].domain, path)  # pace: provider group caps and the IP warm-up
    rows = gate.admit(rows)
    if not rows:
        gate.close()
        return
    session = Session(path, settings)
    try:
        session.open()
    except SessionError as exc:
        gate.close()
        for _, group in groupby(rows, key=lambda d: d.message_id):
            group = list(group)
            record_later(group, [exc.reply] * len(group), session.peer, started, t0)
        return

    sent = 0
    try:
        while rows:
            contents = _contents({d.message_id for d in rows})
            for message_id, group in groupby(rows, key=lambda d: d.message_id):
                group = list(group)
                if message_id not in contents:  # deleted meanwhile, its deliveries with it
                    continue
                started, t0 = clock.now(), time.monotonic()
                mail_from, data = outgoing(settings, message_id, *contents[message_id])
                replies = session.send(mail_from, [d.rcpt for d in group], data)
                record_later(group, replies, session.peer, started, t0)
                sent += 1
            if not session.alive or sent >= MESSAGES_PER_SESSION:
                break
            rows = gate.admit(more())
    finally:
        session.close()
        gate.close()
