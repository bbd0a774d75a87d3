"""Retention over the real parts: mail sent over SMTP and delivered to a sink, the clock moved on,
the purge run (CLI, the Huey task): bodies go first, then messages; waiting mail stays; the space
goes back to the file system; a low disk raises an alert."""

from __future__ import annotations

import datetime as dt
import json
import os

import pytest

from appliance import db, queue, retention
from appliance.models import Alert, Attempt, Delivery, Event, Message, MessageBody
from tests.support import SCALEOUT
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for

DAY = 24 * 3600
SENDER = "shop@shop.test"


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


def send(relay, account, rcpts: list[str], *, subject: str, count: int = 1, padding: int = 0) -> list[str]:
    """Send ``count`` messages over one SMTP session; return their ids (oldest first)."""
    username, password = account
    before = {m for (m,) in Message.select(Message.id).tuples()}
    with relay.smtp.submission() as client:
        client.login(username, password)
        filler = "x" * 98 + "\r\n"  # lines of 100 octets: SMTP allows 1000 at most
        for i in range(count):
            body = (
                f"From: {SENDER}\r\nTo: {', '.join(rcpts)}\r\nSubject: {subject} {i}\r\n\r\n"
                f"{filler * (padding // len(filler))}Thank you.\r\n"
            ).encode()
            client.sendmail(SENDER, rcpts, body)
    ids = [
        m for (m,) in Message.select(Message.id).order_by(Message.received_at, Message.id).tuples() if m not in before
    ]
    assert len(ids) == count
    return ids


def statuses(message_id: str) -> set[str]:
    return {d.status for d in Delivery.select(Delivery.status).where(Delivery.message == message_id)}


def settle(message_ids: list[str], *wanted: str) -> None:
    assert wait_for(lambda: all(statuses(m) and statuses(m) <= set(wanted) for m in message_ids), timeout=30)


def has_body(message_id: str) -> bool:
    return MessageBody.select().where(MessageBody.message == message_id).exists()


def test_bodies_go_first_then_messages_and_waiting_mail_stays(relay, account, dns_server, sink_mx, test_clock, run_cli):
    dns_server.a("example.test", "127.0.0.3")
    sink_mx("127.0.0.3")
    dns_server.a("down.test", "127.0.0.4")  # nothing listens there: deferred
    (done,) = send(relay, account, ["alice@example.test"], subject="Delivered")
    settle([done], "delivered")
    deferred, held = send(relay, account, ["bob@down.test"], subject="Waiting", count=2)
    settle([deferred, held], "deferred")
    assert queue.hold(list(Delivery.select().where(Delivery.message == held)), by="test")
    events_of_done = Event.select().where(Event.message == done).count()
    assert events_of_done >= 2  # accepted, delivered

    test_clock.advance(29 * DAY)
    assert json.loads(run_cli("retention", "run", "--dry-run", "--json").output)["bodies"] == 0

    test_clock.advance(2 * DAY)  # 31 days: past RETENTION_BODY_DAYS, not RETENTION_DAYS
    dry = json.loads(run_cli("retention", "run", "--dry-run", "--json").output)
    assert (dry["dry_run"], dry["bodies"], dry["messages"], dry["kept_pending"]) == (True, 1, 0, 2)
    assert has_body(done)  # a dry run purges nothing

    result = run_cli("retention", "run")
    assert result.exit_code == 0, result.output
    assert "bodies: purged 1 " in result.output
    assert "messages: purged 0 " in result.output
    assert "kept: 2 old messages still queued, sending, deferred or held" in result.output
    assert not has_body(done)
    assert Message.get_by_id(done).status == "delivered"  # the message itself stays, with its history
    assert Event.select().where(Event.message == done).count() == events_of_done
    assert has_body(deferred) and has_body(held)
    assert statuses(held) == {"held"} and statuses(deferred) == {"deferred"}

    test_clock.advance(60 * DAY)  # 91 days: past RETENTION_DAYS
    report = json.loads(run_cli("retention", "run", "--json").output)
    assert (report["bodies"], report["messages"], report["deliveries"], report["kept_pending"]) == (0, 1, 1, 2)
    assert report["attempts"] == 1 and report["events"] == events_of_done
    assert Message.get_or_none(Message.id == done) is None
    assert not Delivery.select().where(Delivery.message == done).exists()
    assert not Event.select().where(Event.message == done).exists()
    assert not Attempt.select().join(Delivery).where(Delivery.message == done).exists()
    for waiting in (deferred, held):  # whatever their age
        assert Message.get_or_none(Message.id == waiting) is not None and has_body(waiting)

    again = run_cli("retention", "run")
    assert "bodies: purged 0 " in again.output and "messages: purged 0 " in again.output


def test_the_hourly_huey_task_runs_the_purge(relay, account, dns_server, sink_mx, test_clock):
    dns_server.a("example.test", "127.0.0.3")
    sink_mx("127.0.0.3")
    (done,) = send(relay, account, ["alice@example.test"], subject="Hourly")
    settle([done], "delivered")
    rt = relay.queue
    due = [task.name for task in rt.huey.read_periodic(dt.datetime(2026, 3, 1, 4, int(queue.RETENTION_MINUTE)))]
    assert due == ["retention"]
    assert rt.huey.read_periodic(dt.datetime(2026, 3, 1, 4, int(queue.RETENTION_MINUTE) + 1)) == []

    test_clock.advance(95 * DAY)
    report = rt.retention_task.call_local()
    assert (report.bodies, report.messages) == (1, 1)
    assert Message.get_or_none(Message.id == done) is None


@pytest.mark.skipif(SCALEOUT, reason="PostgreSQL reuses the space of deleted rows; there is no file to shrink")
def test_the_sqlite_file_gives_the_space_back(relay, account, dns_server, sink_mx, test_clock):
    assert db.database.execute_sql("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL from its creation
    dns_server.a("example.test", "127.0.0.3")
    sink_mx("127.0.0.3")
    ids = send(relay, account, ["alice@example.test"], subject="Big", count=40, padding=100_000)
    settle(ids, "delivered")
    path = db.database.obj.database

    def pages() -> int:
        return db.database.execute_sql("PRAGMA page_count").fetchone()[0]

    def file_size() -> int:
        db.write(lambda: None).result()
        db.database.execute_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        return os.path.getsize(path)

    pages_before, size_before = pages(), file_size()
    test_clock.advance(31 * DAY)
    report = retention.purge(relay.queue.settings)
    assert report.bodies == 40 and report.vacuumed_pages > 0
    assert db.database.execute_sql("PRAGMA freelist_count").fetchone()[0] == 0
    # 40 bodies of 100 kB: about 4 MB, 1000 pages of 4 KiB, are gone from the file.
    assert pages_before - pages() > 900
    assert size_before - file_size() > 3_500_000


def test_the_database_size_is_measured_in_both_modes(app):
    with app.app_context():
        size = retention.database_size(app.config)
        assert size > 0
        assert retention.free_disk(app.config) > 0


@pytest.fixture
def low_disk(overrides):
    return {**overrides, "DISK_ALERT_FREE_MB": 1024**3}  # 1 PiB: every disk here is "low"


def test_a_low_disk_raises_one_alert_per_episode(low_disk):
    from appliance import create_app

    app = create_app(low_disk)
    with app.app_context():
        rt = queue.init(app.config)
        queue.sweep(rt)
        queue.sweep(rt)
        (alert,) = Alert.select().where(Alert.kind == retention.DISK_SPACE_LOW)
        assert alert.severity == "critical" and alert.count == 1
        assert "under DISK_ALERT_FREE_MB" in alert.text and "452 4.3.1" in alert.text


def test_no_alert_while_the_disk_has_room(app):
    with app.app_context():
        queue.sweep(queue.init(app.config))
        assert not Alert.select().where(Alert.kind == retention.DISK_SPACE_LOW).exists()
