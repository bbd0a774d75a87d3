"""Outbound delivery as a checklist of six named steps, numbered as in docs/delivery.md ("Pipeline").

A queue worker (appliance/queue.py) claims rows of one destination domain and calls ``deliver``,
never on the SMTP event loop:

  1. route    where the domain's mail goes: its MX hosts, or the smarthost         route.py
  2. pace     which rows may go now: provider group caps, the IP warm-up            pace.py
  3. connect  one SMTP session to the first target that answers                    send.py
  4. sign     per message: DKIM signatures, the return path                         sign.py
  5. send     per message: one SMTP transaction, a reply per recipient              send.py
  6. record   per message: the outcomes, handed to the process's writer             record.py

Steps 2 and 4-6 repeat for the rows the open session claims next, up to MESSAGES_PER_SESSION
messages. When step 1 or 3 fails, its reply is every row's outcome, recorded by ``Outcomes.fail``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from itertools import groupby
from typing import NamedTuple

from .. import clock, db, fanout, message_bytes, tracking
from ..models import Claimed, Delivery, Message, MessageBody
from .pace import Gate
from .record import Outcome, record_many
from .replies import Reply
from .route import RouteError, route
from .send import Peer, Session, SessionError
from .sign import outgoing

MESSAGES_PER_SESSION = 100  # then QUIT and let the next task open a fresh session


class Outcomes:
    """Step 6, record: hand each message's outcomes to the process's writer without waiting for the
    commit (the rows stay leased meanwhile, so nothing else takes them); ``wait`` awaits them all."""

    def __init__(self, settings: dict):
        self.settings = settings
        self._pending: list[Future] = []

    def record(self, rows: list[Claimed], replies: list[Reply], peer: Peer, started, t0: float) -> None:
        """Record one message's attempt: ``replies`` holds a reply per row, in order."""
        duration = int((time.monotonic() - t0) * 1000)
        outcomes = [Outcome(d, reply, peer, started, duration) for d, reply in zip(rows, replies, strict=True)]
        self._pending.append(db.write_many(record_many, (outcomes, self.settings)))

    def fail(self, rows: list[Claimed], reply: Reply, peer: Peer, started, t0: float) -> None:
        """Record ``reply`` as the outcome of every row, message by message (a step failed them all)."""
        for _, group in groupby(rows, key=lambda d: d.message_id):
            group = list(group)
            self.record(group, [reply] * len(group), peer, started, t0)

    def wait(self) -> None:
        for future in self._pending:
            future.result()


def deliver(rows: list[Claimed], settings: dict, more: Callable[[], list[Claimed]]) -> None:
    """Deliver claimed rows of one destination domain, then whatever ``more`` claims next over the
    same session; record every outcome before returning."""
    outcomes = Outcomes(settings)
    try:
        _steps(rows, settings, more, outcomes)
    finally:
        outcomes.wait()


def _steps(rows: list[Claimed], settings: dict, more: Callable[[], list[Claimed]], outcomes: Outcomes) -> None:
    started, t0 = clock.now(), time.monotonic()
    domain = rows[0].domain
    try:  # 1. route
        path = route(settings, domain)
    except RouteError as exc:
        outcomes.fail(rows, exc.reply, Peer(), started, t0)
        return
    gate = Gate(settings, domain, path)
    session = Session(path, settings)
    try:
        rows = gate.admit(rows)  # 2. pace
        if not rows:
            return
        try:  # 3. connect
            session.open()
        except SessionError as exc:
            outcomes.fail(rows, exc.reply, session.peer, started, t0)
            return
        sent = 0
        while rows:
            contents = _contents({d.message_id for d in rows})
            for message_id, group in groupby(rows, key=lambda d: d.message_id):
                group = list(group)
                if message_id not in contents:  # deleted meanwhile, its deliveries with it
                    continue
                stored = contents[message_id]
                # A tracked or broadcast message: a copy per recipient, each naming its recipient.
                copies = [[d] for d in group] if stored.personal else [group]
                for copy in copies:
                    started, t0 = clock.now(), time.monotonic()
                    mail_from, data = outgoing(
                        settings, message_id, stored.mail_from, stored.copy_for(settings, copy[0].id, copy[0].rcpt)
                    )  # 4. sign
                    replies = session.send(mail_from, [d.rcpt for d in copy], data)  # 5. send
                    outcomes.record(copy, replies, session.peer, started, t0)  # 6. record
                sent += 1
            if not session.alive or sent >= MESSAGES_PER_SESSION:
                break
            rows = gate.admit(more())  # 2. pace, for the rows the session claims next
    finally:
        session.close()
        gate.close()


class Stored(NamedTuple):
    """A message as delivery reads it: envelope sender, stored bytes, stream and tracking."""

    mail_from: str
    data: bytes
    stream: str
    opens: bool
    clicks: bool
    tracking_ids: dict[int, str]  # delivery id → tracking id, for a tracked or broadcast message
    list_send: bool = False  # sent to a list address: each copy's To: is its member (appliance/fanout.py)

    @property
    def personal(self) -> bool:
        return bool(self.tracking_ids)

    def copy_for(self, settings: dict, delivery_id: int, rcpt: str) -> bytes:
        """The bytes for one recipient: with its tracking links when it has them, and a list send's
        To: set to the member (before signing)."""
        tracking_id = self.tracking_ids.get(delivery_id)
        if tracking_id is None:
            return self.data
        data = message_bytes.with_to(self.data, rcpt) if self.list_send else self.data
        return tracking.personalize(
            settings, data, tracking_id, stream=self.stream, opens=self.opens, clicks=self.clicks
        )


def _contents(message_ids: set[str]) -> dict[str, Stored]:
    """Return each message as delivery reads it, in one query (and one more for tracked ones)."""
    query = (
        Message.select(
            Message.id, Message.mail_from, MessageBody.data, Message.stream, Message.track_opens, Message.track_clicks
        )
        .join(MessageBody, on=(MessageBody.message == Message.id))
        .where(Message.id.in_(list(message_ids)))
        .tuples()
    )
    rows = list(query)
    personal = [r[0] for r in rows if r[3] == "broadcast" or r[4] or r[5]]
    ids: dict[str, dict[int, str]] = {}
    if personal:
        tracked = (
            Delivery.select(Delivery.message, Delivery.id, Delivery.tracking_id)
            .where(Delivery.message.in_(personal) & Delivery.tracking_id.is_null(False))
            .tuples()
        )
        for message_id, delivery_id, tracking_id in tracked:
            ids.setdefault(message_id, {})[delivery_id] = tracking_id
    list_sends = fanout.is_list_send(personal)
    return {
        message_id: Stored(
            mail_from, bytes(data), stream, bool(opens), bool(clicks), ids.get(message_id, {}), message_id in list_sends
        )
        for message_id, mail_from, data, stream, opens, clicks in rows
    }
