"""The events layer: every outcome of a message is an Event, committed with the outcome, shown by
`messages show --json` and the dashboard, and what follows it (the queue, alerts) runs right
after the commit."""

from __future__ import annotations

import pytest

from appliance import db, events, intake
from appliance.models import Event, Message
from tests.support.mail import SENDER, settled, submit
from tests.support.process import cli_json
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    # No periodic sweep within a test: whatever goes out was enqueued by the events layer.
    return relay_overrides(overrides, dns_server, delivery_port, SWEEP_INTERVAL=3600, ALERT_EMAILS="ops@shop.test")


@pytest.fixture
def remote(dns_server, sink_mx):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    return sink_mx("127.0.0.3")


@pytest.fixture
def sender_mx(dns_server, sink_mx):
    """shop.test's own MX: where DSNs and alert mails arrive."""
    dns_server.mx("shop.test", (10, "mx.shop.test"))
    dns_server.a("mx.shop.test", "127.0.0.9")
    return sink_mx("127.0.0.9")


def shown_events(run_cli, message_id: str) -> list[dict]:
    return cli_json(run_cli("messages", "show", message_id, "--json"))["events"]


def kinds(run_cli, message_id: str) -> list[tuple[str, str]]:
    return [(e["type"], e["recipient"]) for e in shown_events(run_cli, message_id)]


def test_accepted_delivered_bounced_and_deferred_are_events_of_the_message(relay, account, remote, run_cli):
    message_id = submit(relay, account, ["alice@example.test", "unknown.user@example.test", "greylist@example.test"])
    settled(message_id, "delivered", "bounced", "deferred")
    listed = shown_events(run_cli, message_id)
    assert listed[0]["type"] == "accepted" and listed[0]["recipient"] == ""
    assert {(e["type"], e["recipient"]) for e in listed[1:]} == {
        ("delivered", "alice@example.test"),
        ("bounced", "unknown.user@example.test"),
        ("deferred", "greylist@example.test"),
    }
    assert all(e["at"] for e in listed)
    bounced = next(e for e in listed if e["type"] == "bounced")
    assert "550 5.1.1" in bounced["details"]["reply"] and bounced["details"]["mx"] == "mx.example.test"
    assert "accepted" in run_cli("messages", "show", message_id).output  # the text form lists them too


def test_a_delivery_that_keeps_failing_until_the_give_up_age_is_a_failed_event(
    relay, account, dns_server, run_cli, test_clock
):
    from appliance import queue

    dns_server.mx("down.test", (10, "mx.down.test"))
    dns_server.a("mx.down.test", "127.0.0.2")  # nothing listens there
    message_id = submit(relay, account, ["bob@down.test"])
    settled(message_id, "deferred")
    test_clock.advance(72 * 3600 + 1)
    queue.sweep(relay.queue)
    settled(message_id, "failed")
    assert [k for k, _ in kinds(run_cli, message_id)] == ["accepted", "deferred", "failed"]


def test_a_suppressed_recipient_is_a_suppressed_event(relay, account, remote, run_cli):
    assert run_cli("suppressions", "add", "gone@example.test").exit_code == 0
    message_id = submit(relay, account, ["gone@example.test", "alice@example.test"])
    settled(message_id, "suppressed", "delivered")
    assert ("suppressed", "gone@example.test") in kinds(run_cli, message_id)
    suppressed = Event.get((Event.message == message_id) & (Event.type == "suppressed"))
    assert "added by an admin" in suppressed.details


def test_hold_release_and_cancel_from_the_cli_are_events_with_who_did_it(relay, account, remote, run_cli):
    message_id = submit(relay, account, ["greylist@example.test"])
    settled(message_id, "deferred")
    for verb in ("hold", "release"):
        assert run_cli("queue", verb, message_id).exit_code == 0
    settled(message_id, "delivered")  # released: due now, and the greylisting remote takes it
    second = submit(relay, account, ["greylist2@example.test"])
    settled(second, "deferred")
    assert run_cli("queue", "cancel", second).exit_code == 0
    assert [k for k, _ in kinds(run_cli, message_id)] == ["accepted", "deferred", "held", "released", "delivered"]
    assert [k for k, _ in kinds(run_cli, second)] == ["accepted", "deferred", "cancelled"]
    held = next(e for e in shown_events(run_cli, message_id) if e["type"] == "held")
    assert held["details"] == {"by": "cli"} and held["recipient"] == "greylist@example.test"


def test_a_dsn_and_the_alert_mail_go_out_right_after_the_bounce_without_a_sweep(
    relay, account, remote, sender_mx, run_cli
):
    message_id = submit(relay, account, ["unknown.user@example.test"], subject="Invoice")
    settled(message_id, "bounced")
    # SWEEP_INTERVAL is an hour: both notices were enqueued by the bounce's commit.
    arrived = wait_for(lambda: len(sender_mx.messages) >= 2 and sender_mx.messages)
    assert sorted(m.rcpts[0] for m in arrived) == ["ops@shop.test", SENDER]
    alert_mail = next(m for m in arrived if m.rcpts == ["ops@shop.test"])
    assert b"delivery-failing" in alert_mail.data and b"unknown.user@example.test" in alert_mail.data
    notices = Message.select().where(Message.id != message_id)
    assert {
        (e["type"], e["details"].get("via"))
        for m in notices
        for e in shown_events(run_cli, m.id)
        if e["type"] == "accepted"
    } == {("accepted", "dsn"), ("accepted", "notice")}


def test_events_reach_subscribers_only_after_their_transaction_commits(app):
    seen = []
    events.subscribe([events.ACCEPTED], seen.append)
    item = intake.prepare(
        b"From: a@shop.test\r\n\r\nhi\r\n",
        mail_from="a@shop.test",
        rcpts=["b@example.test"],
        hostname="relay.test",
        client_ip="127.0.0.1",
        client_helo="c",
        tls="",
        username=None,
        account_id=None,
        account_priority=3,
    )
    with db.atomic_write():
        intake.store(item)
        assert seen == []  # not yet committed
    assert [[(e.type, e.message_id) for e in batch] for batch in seen] == [[("accepted", item.id)]]
    again = intake.prepare(
        b"From: a@shop.test\r\n\r\nhi\r\n",
        mail_from="a@shop.test",
        rcpts=["b@example.test"],
        hostname="relay.test",
        client_ip="127.0.0.1",
        client_helo="c",
        tls="",
        username=None,
        account_id=None,
        account_priority=3,
    )
    with pytest.raises(RuntimeError), db.atomic_write():
        intake.store(again)
        raise RuntimeError("rolled back")
    assert len(seen) == 1 and not Event.select().where(Event.message == again.id).exists()
