"""The message log service (appliance/message_log.py): the search's checks, keyset pages, a message's
detail. The messages are stored through the real intake (tests/web/conftest.py)."""

from __future__ import annotations

import datetime as dt

from appliance import clock, message_log
from appliance.models import Attempt, Delivery, Message


def test_keyset_pages_walk_every_message_once_newest_first(app, store_message):
    ids = [store_message(subject=f"m{i}") for i in range(7)]
    stamp = dt.datetime(2024, 5, 1, 10)
    for i, message_id in enumerate(ids):  # two share a timestamp: the id breaks the tie
        Message.update(received_at=stamp + dt.timedelta(minutes=min(i, 5))).where(Message.id == message_id).execute()
    seen, cursor = [], None
    while True:
        page = message_log.search({}, cursor, limit=3)
        seen += [m.id for m in page.messages]
        assert set(page.recipients) == {m.id for m in page.messages}
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    expected = [m.id for m in Message.select().order_by(Message.received_at.desc(), Message.id.desc())]
    assert seen == expected and len(seen) == 7


def test_bad_fields_are_left_out_with_a_sentence_each(app):
    filters, errors = message_log.parse_filters(
        {
            "since": "31/01/2025",
            "account": "shop",
            "status": "lost",
            "stream": "bulk",
            "rcpt": "  bob@example.com ",
            "subject": "",
        }
    )
    assert filters == {"rcpt": "bob@example.com"}
    assert errors == {
        "since": "Use a date like 2025-01-31.",
        "account": "Pick an account from the list.",
        "status": "Pick a status from the list.",
        "stream": "Pick transactional or broadcast.",
    }


def test_the_detail_has_the_deliveries_attempts_oldest_first_and_events(app, store_message):
    message_id = store_message(rcpts=("bob@example.com", "eve@example.org"))
    bob, eve = Delivery.select().where(Delivery.message == message_id).order_by(Delivery.id)
    now = clock.now()
    for delivery, minutes in ((eve, 1), (bob, 2), (eve, 3)):
        Attempt.create(
            delivery=delivery,
            started_at=now + dt.timedelta(minutes=minutes),
            outcome="deferred",
            code=451,
            enhanced_code="4.7.1",
            text="try later",
            duration_ms=5,
        )
    found = message_log.detail(f" {message_id.lower()} ")
    assert found.message.id == message_id
    assert [d.rcpt for d in found.deliveries] == ["bob@example.com", "eve@example.org"]
    assert [a.delivery.rcpt for a in found.attempts] == ["eve@example.org", "bob@example.com", "eve@example.org"]
    assert {d: len(a) for d, a in found.attempts_by_delivery().items()} == {bob.id: 1, eve.id: 2}
    assert [e["type"] for e in found.events] == ["accepted"]
    assert message_log.detail("01NOSUCHMESSAGE") is None
