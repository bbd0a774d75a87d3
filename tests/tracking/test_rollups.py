"""The analytics' roll-ups (EventCount by hour, EventDay by day, LinkDay for the top links): the report
read from them equals the scan of the events they replaced (tests/support/analytics_reference.py), for
real traffic and for made-up histories, and counting them anew from the stored rows gives the rows that
recording kept."""

from __future__ import annotations

import datetime as dt

from appliance import accounts, analytics, clock, db, events, queue
from appliance.models import CANCELLED, QUEUED, SUPPRESSED, Delivery, EventCount, EventDay, LinkDay, Message
from tests.support import analytics_reference
from tests.support.tracking import events_of
from tests.support.wait import wait_for

H = dt.timedelta(hours=1)


def rollup_rows() -> list[tuple]:
    """The rows of the three roll-ups (hourly, daily, links), each table's sorted."""
    tables = []
    for model, columns in (
        (EventCount, ("received", "hour", "account", "stream", "provider", "metric")),
        (EventDay, ("received", "day", "account", "stream", "provider", "metric")),
        (LinkDay, ("received", "account", "stream", "link", "url")),
    ):
        fields = [getattr(model, c) for c in columns]
        where = (model.count != 0) | (model.uniques != 0)
        tables.append(sorted(model.select(*fields, model.count, model.uniques).where(where).tuples()))
    return tables


def assert_same_both_ways(ranges, scopes) -> None:
    for since, until in ranges:
        for scope in scopes:
            found = analytics.report(since, until, **scope).as_dict()
            assert found == analytics_reference.report(since, until, **scope), (since, until, scope)


def assert_rebuild_keeps_the_rows() -> None:
    kept = rollup_rows()
    assert all(kept)
    with db.atomic_write():
        events.rebuild_rollups(analytics.provider_names())
    assert rollup_rows() == kept


def test_real_traffic_gives_the_same_report_from_the_rollup_as_from_the_events(app, traffic):
    wait_for(lambda: len(events_of(app, "delivered")) == 3)  # the sink has the copies a moment before
    with app.app_context():
        now = clock.now()
        hour = events.hour_of(now)
        account_id = Message.select(Message.account).where(Message.stream == "broadcast").scalar()
        ranges = [
            (hour - 48 * H, hour + 2 * H),  # whole hours: the roll-up alone
            (now - dt.timedelta(days=30), now),  # the page's default: parts of an hour at both ends
            (now - dt.timedelta(minutes=30), now + dt.timedelta(minutes=5)),  # inside one or two hours
            (hour + 2 * H, hour + 3 * H),
        ]  # nothing
        scopes = [
            {},
            {"stream": "broadcast"},
            {"stream": "transactional"},
            {"account_id": account_id},
            {"account_id": 999},
        ]
        assert_same_both_ways(ranges, scopes)
        whole = analytics.report(*ranges[0], stream="broadcast").as_dict()
        assert (whole["sent"], whole["unique_human_opens"], whole["machine_opened"], whole["unsubscribed"]) == (
            2,
            1,
            1,
            1,
        )
        assert_rebuild_keeps_the_rows()


def _message(
    mid: str,
    received: dt.datetime,
    account_id: int | None,
    stream: str,
    rcpts: list[str],
    suppressed: tuple[str, ...] = (),
) -> None:
    db.insert_rows(
        Message,
        [
            {
                "id": mid,
                "account": account_id,
                "direction": "outbound",
                "status": QUEUED,
                "received_at": received,
                "stream": stream,
                "rcpt_count": len(rcpts),
            }
        ],
    )
    db.insert_rows(
        Delivery,
        [
            {
                "message": mid,
                "rcpt": r,
                "domain": r.rpartition("@")[2].lower(),
                "status": SUPPRESSED if r in suppressed else QUEUED,
                "updated_at": received,
            }
            for r in rcpts
        ],
    )
    events.record(
        [
            events.occurred(mid, events.ACCEPTED, "", received),
            *(events.occurred(mid, events.SUPPRESSED, r, received) for r in suppressed),
        ]
    )


def test_a_made_up_history_gives_the_same_report_both_ways_and_a_rebuild_the_same_rows(app):
    base = dt.datetime(2025, 3, 10, 9, 0)
    with app.app_context(), db.atomic_write():
        shop, _ = accounts.create("Shop")
        other, _ = accounts.create("Other")
        _message(
            "01A",
            base + dt.timedelta(minutes=5),
            shop.id,
            "broadcast",
            ["Ann@Gmail.com", "bob@yahoo.com", "cy@example.test", "dee@example.test"],
            suppressed=("dee@example.test",),
        )
        _message(
            "01B",
            base + dt.timedelta(hours=3, minutes=59),
            other.id,
            "transactional",
            ["ann@gmail.com", "eve@outlook.com"],
        )
        _message("01C", base + dt.timedelta(days=2, minutes=30), None, "broadcast", ["fay@example.test"])
        _message("01D", base - dt.timedelta(days=40), shop.id, "broadcast", ["old@gmail.com"])
        at = base + dt.timedelta(minutes=10)
        record = [
            ("01A", events.DELIVERED, "Ann@Gmail.com", at, {}),
            ("01A", events.OPENED, "ann@gmail.com", at + dt.timedelta(minutes=55), {"machine": False}),
            ("01A", events.OPENED, "Ann@Gmail.com", at + 5 * H, {"machine": False}),  # not a second opener
            ("01A", events.CLICKED, "Ann@Gmail.com", at + 6 * H, {"machine": False, "url": "https://a.test/1"}),
            ("01A", events.CLICKED, "Ann@Gmail.com", at + 6 * H, {"machine": False, "url": "https://a.test/1"}),
            ("01A", events.CLICKED, "Ann@Gmail.com", at + 7 * H, {"machine": False, "url": "https://a.test/2"}),
            ("01A", events.DELIVERED, "bob@yahoo.com", at, {}),
            ("01A", events.OPENED, "bob@yahoo.com", at + H, {"machine": True}),
            ("01A", events.CLICKED, "bob@yahoo.com", at + H, {"machine": True, "url": "https://a.test/3"}),
            ("01A", events.COMPLAINED, "bob@yahoo.com", at + 30 * H, {}),
            ("01A", events.UNSUBSCRIBED, "bob@yahoo.com", at + 30 * H, {}),
            ("01A", events.BOUNCED, "cy@example.test", at, {}),
            ("01B", events.DELIVERED, "ann@gmail.com", base + 4 * H, {}),
            ("01B", events.OPENED, "ann@gmail.com", base + 4 * H, {"machine": False}),
            ("01C", events.DELIVERED, "fay@example.test", base + dt.timedelta(days=2, hours=1), {}),
            ("01C", events.OPENED, "fay@example.test", base + dt.timedelta(days=2, hours=1), {"machine": False}),
            ("01D", events.DELIVERED, "old@gmail.com", base - dt.timedelta(days=40), {}),
        ]
        for mid, type_, rcpt, when, details in record:
            events.record([events.occurred(mid, type_, rcpt, when, **details)])
    with app.app_context():
        waiting = Delivery.select().where(Delivery.rcpt == "eve@outlook.com")
        assert [d.status for d in queue.cancel(list(waiting), by="test")] == [CANCELLED]  # no longer sent
        ranges = [
            (base, base + 72 * H),
            (base - dt.timedelta(days=60), base + dt.timedelta(days=1)),
            (base + dt.timedelta(minutes=3), base + dt.timedelta(hours=3, minutes=59)),
            (base + dt.timedelta(minutes=6), base + dt.timedelta(days=2, minutes=31)),
            (base + 3 * H, base + 4 * H),
            (base + dt.timedelta(minutes=30), base + dt.timedelta(minutes=40)),
            # whole days (the dashboard's ranges): the day roll-ups, then hours and events at the ends
            (events.day_of(base), events.day_of(base) + dt.timedelta(days=3)),
            (events.day_of(base) - dt.timedelta(days=45), events.day_of(base) + dt.timedelta(days=2, hours=1)),
            (events.day_of(base), base + dt.timedelta(days=2, minutes=31)),
        ]
        scopes = [
            {},
            {"stream": "broadcast"},
            {"stream": "transactional"},
            {"account_id": shop.id},
            {"account_id": other.id, "stream": "transactional"},
        ]
        assert_same_both_ways(ranges, scopes)
        found = analytics.report(base, base + 72 * H).as_dict()
        assert (
            found["sent"],
            found["delivered"],
            found["opened"],
            found["unique_human_opens"],
            found["clicked"],
            found["unique_human_clicks"],
            found["machine_clicked"],
        ) == (5, 4, 4, 3, 3, 1, 1)
        assert found["top_links"] == [
            {"url": "https://a.test/1", "clicks": 2, "unique": 1},
            {"url": "https://a.test/2", "clicks": 1, "unique": 1},
        ]
        assert_rebuild_keeps_the_rows()
