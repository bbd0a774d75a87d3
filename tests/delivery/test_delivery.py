"""Delivery over real sockets on loopback: DNS → MX sinks, outcomes, retries, DSNs, suppressions."""

from __future__ import annotations

import datetime as dt
import email

import pytest

from appliance import queue
from appliance.models import Alert, Attempt, Message, Suppression
from tests.support.mail import SENDER, deliveries, settled, submit
from tests.support.relay import relay_overrides, smtp_ports
from tests.support.wait import wait_for


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.fixture
def sender_mx(dns_server, sink_mx):
    """The envelope sender's own MX, where DSNs arrive."""
    dns_server.mx("shop.test", (10, "mx.shop.test"))
    dns_server.a("mx.shop.test", "127.0.0.9")
    return sink_mx("127.0.0.9")


def test_a_message_goes_to_the_most_preferred_mx_that_answers_over_starttls(relay, account, dns_server, sink_mx):
    dns_server.mx("example.test", (10, "mx1.example.test"), (20, "mx2.example.test"), (30, "mx3.example.test"))
    dns_server.a("mx1.example.test", "127.0.0.2")  # nothing listens there: connection refused
    dns_server.a("mx2.example.test", "127.0.0.3")
    dns_server.a("mx3.example.test", "127.0.0.4")
    second = sink_mx("127.0.0.3", starttls=True)
    third = sink_mx("127.0.0.4")
    message_id = submit(relay, account, ["alice@example.test"])

    (row,) = settled(message_id, "delivered")
    assert [m.rcpts for m in second.messages] == [["alice@example.test"]]
    assert third.messages == []
    received = second.messages[0]
    assert received.helo == "relay.test"
    assert received.tls.startswith("TLSv1")
    assert received.queue_id == message_id
    assert row.last_code == 250 and "Ok: queued as 127.0.0.3-1" in row.last_reply
    (attempt,) = Attempt.select().where(Attempt.delivery == row.id)
    assert (attempt.mx_host, attempt.mx_ip, attempt.code, attempt.enhanced_code) == (
        "mx2.example.test",
        "127.0.0.3",
        250,
        "2.0.0",
    )
    assert attempt.tls == received.tls and attempt.outcome == "delivered"
    assert Message.get_by_id(message_id).status == "delivered"


def test_a_domain_without_mx_records_is_delivered_to_its_address_record(relay, account, dns_server, sink_mx):
    dns_server.a("plain.test", "127.0.0.5")
    sink = sink_mx("127.0.0.5")
    message_id = submit(relay, account, ["bob@plain.test"])
    settled(message_id, "delivered")
    assert [m.queue_id for m in sink.messages] == [message_id]
    assert sink.messages[0].tls == ""  # the sink offers no STARTTLS: plain text is fine for MX


def test_a_greylisting_mx_defers_and_the_retry_after_the_backoff_delivers(
    relay, account, dns_server, sink_mx, test_clock
):
    dns_server.mx("grey.test", (10, "mx.grey.test"))
    dns_server.a("mx.grey.test", "127.0.0.6")
    sink = sink_mx("127.0.0.6")
    message_id = submit(relay, account, ["greylist@grey.test"])

    (row,) = settled(message_id, "deferred")
    assert row.last_reply == "451 4.7.1 Greylisted, try again later"
    assert (row.next_attempt_at - test_clock.value).total_seconds() == pytest.approx(60, abs=1)
    assert Message.get_by_id(message_id).status == "deferred"
    assert queue.sweep(relay.queue) == 0  # not due yet

    test_clock.advance(61)
    assert queue.sweep(relay.queue) == 1
    (row,) = settled(message_id, "delivered")
    assert row.attempts == 2
    attempts = Attempt.select().where(Attempt.delivery == row.id).order_by(Attempt.id)
    assert [a.outcome for a in attempts] == ["deferred", "delivered"]
    assert len(sink.messages) == 1
    test_clock.advance(3600)
    assert queue.sweep(relay.queue) == 0  # a delivered row is never sent again


def test_an_unknown_user_bounces_once_with_a_dsn_and_is_suppressed(relay, account, dns_server, sink_mx, sender_mx):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    sink_mx("127.0.0.3")
    message_id = submit(relay, account, ["unknown.user@example.test"], subject="Your invoice")

    (row,) = settled(message_id, "bounced")
    assert row.last_code == 550 and "5.1.1" in row.last_reply
    assert Message.get_by_id(message_id).status == "bounced"
    suppression = Suppression.get(Suppression.address == "unknown.user@example.test")
    assert suppression.source == "bounce" and "5.1.1" in suppression.reason
    # The admin hears of it in the alert center, right after the bounce is committed.
    alert = wait_for(lambda: Alert.get_or_none(Alert.kind == "delivery-failing"))
    assert alert.subject == f"account {account[0]}" and "unknown.user@example.test" in alert.text

    dsn = wait_for(lambda: sender_mx.messages)[0]
    assert dsn.mail_from in ("", "<>")  # the null sender: a DSN never causes another
    assert dsn.rcpts == [SENDER]
    report = email.message_from_bytes(dsn.data)
    assert report.get_content_type() == "multipart/report"
    assert report.get_param("report-type") == "delivery-status"
    assert report["To"] == SENDER and report["Auto-Submitted"] == "auto-replied"
    human, status, headers = report.get_payload()
    assert "unknown.user@example.test" in human.get_payload(decode=True).decode()
    per_message, per_rcpt = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; relay.test"
    assert per_rcpt["Final-Recipient"] == "rfc822; unknown.user@example.test"
    assert per_rcpt["Action"] == "failed"
    assert per_rcpt["Status"] == "5.1.1"
    assert per_rcpt["Remote-MTA"] == "dns; mx.example.test"
    assert per_rcpt["Diagnostic-Code"].startswith("smtp; 550 5.1.1")
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: Your invoice" in headers.get_payload()

    # A later message to the suppressed address is accepted, recorded as suppressed, and not sent.
    again = submit(relay, account, ["unknown.user@example.test"], subject="Another")
    (row,) = deliveries(again)
    assert row.status == "suppressed" and "hard bounce" in row.last_reply
    assert Message.get_by_id(again).status == "suppressed"
    assert len(sender_mx.messages) == 1


def test_a_full_mailbox_bounces_without_suppressing_the_address(relay, account, dns_server, sink_mx, sender_mx):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    sink_mx("127.0.0.3")
    message_id = submit(relay, account, ["full@example.test"])
    (row,) = settled(message_id, "bounced")
    assert "5.2.2" in row.last_reply
    assert not Suppression.select().where(Suppression.address == "full@example.test").exists()
    dsn = email.message_from_bytes(wait_for(lambda: sender_mx.messages)[0].data)
    assert dsn.get_payload()[1].get_payload()[1]["Status"] == "5.2.2"


def test_a_null_mx_bounces_at_once_without_any_connection(relay, account, dns_server, sender_mx):
    dns_server.null_mx("nomail.test")
    message_id = submit(relay, account, ["anyone@nomail.test"])
    (row,) = settled(message_id, "bounced")
    assert row.attempts == 1 and row.last_code == 556 and "5.1.10" in row.last_reply
    (attempt,) = Attempt.select().where(Attempt.delivery == row.id)
    assert attempt.mx_host == "" and attempt.mx_ip == ""
    per_rcpt = email.message_from_bytes(wait_for(lambda: sender_mx.messages)[0].data).get_payload()[1].get_payload()[1]
    assert per_rcpt["Status"] == "5.1.10" and per_rcpt["Remote-MTA"] is None


def test_a_dns_timeout_defers_the_delivery(relay, account, dns_server):
    dns_server.time_out("slow.test")
    message_id = submit(relay, account, ["carol@slow.test"])
    (row,) = settled(message_id, "deferred")
    assert row.last_code == 451 and "4.4.3" in row.last_reply and "timeout" in row.last_reply.lower()


def test_a_delivery_that_keeps_failing_fails_at_the_give_up_age_with_one_dsn(
    relay, account, dns_server, sink_mx, sender_mx, test_clock
):
    dns_server.mx("down.test", (10, "mx.down.test"))
    dns_server.a("mx.down.test", "127.0.0.7")  # refuses connections
    message_id = submit(relay, account, ["dave@down.test"])
    (row,) = settled(message_id, "deferred")
    assert "refused" in row.last_reply

    test_clock.advance(72 * 3600 - 10)
    assert queue.sweep(relay.queue) == 1
    (row,) = wait_for(lambda: (rows := deliveries(message_id)) and rows[0].attempts == 2 and rows)
    assert row.status == "deferred"
    assert row.next_attempt_at == Message.get_by_id(message_id).received_at + dt.timedelta(hours=72)

    test_clock.advance(20)
    assert queue.sweep(relay.queue) == 1
    (row,) = settled(message_id, "failed")
    assert Message.get_by_id(message_id).status == "failed"
    dsns = wait_for(lambda: sender_mx.messages)
    assert len(dsns) == 1
    per_rcpt = email.message_from_bytes(dsns[0].data).get_payload()[1].get_payload()[1]
    assert per_rcpt["Action"] == "failed" and per_rcpt["Status"] == "4.4.1"


def test_a_bounce_of_a_null_sender_message_produces_no_dsn(relay, account, dns_server, sink_mx):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    sink_mx("127.0.0.3")
    message_id = submit(relay, account, ["unknown@example.test"], mail_from="")
    settled(message_id, "bounced")
    assert Message.select().where(Message.mail_from == "").count() == 1  # only the original


def test_a_message_that_needs_smtputf8_bounces_clearly_when_the_mx_lacks_it(
    relay, account, dns_server, sink_mx, sender_mx
):
    dns_server.mx("old.test", (10, "mx.old.test"))
    dns_server.a("mx.old.test", "127.0.0.3")
    dns_server.mx("new.test", (10, "mx.new.test"))
    dns_server.a("mx.new.test", "127.0.0.4")
    old = sink_mx("127.0.0.3", smtputf8=False)
    new = sink_mx("127.0.0.4")
    bounced = submit(relay, account, ["josé@old.test"], options=["SMTPUTF8"])
    delivered = submit(relay, account, ["josé@new.test"], options=["SMTPUTF8"])
    (row,) = settled(bounced, "bounced")
    assert "5.6.7" in row.last_reply and "SMTPUTF8" in row.last_reply
    assert old.messages == []
    settled(delivered, "delivered")
    assert new.messages[0].rcpts == ["josé@new.test"] and "SMTPUTF8" in new.messages[0].mail_options


def test_one_session_carries_every_waiting_message_for_a_domain(app, account, dns_server, sink_mx):
    from appliance.serve import QueueService, start_smtp
    from tests.support.relay import HOSTNAME, Relay, SmtpServer

    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    sink = sink_mx("127.0.0.3", starttls=True)
    service, files = start_smtp(app.config)  # accepting, nobody delivering yet
    try:
        starttls, implicit, mx = smtp_ports(app.config["SMTP_LISTEN"])
        relay = Relay(SmtpServer(HOSTNAME, starttls, implicit, mx, files.ca, service), None)
        ids = [submit(relay, account, [f"user{i}@example.test"], subject=f"n{i}") for i in range(5)]
    finally:
        service.stop()
    workers = QueueService(app.config)
    workers.start()  # the start-up sweep enqueues the five rows together
    try:
        for message_id in ids:
            settled(message_id, "delivered")
    finally:
        workers.stop()
    assert sorted(m.queue_id for m in sink.messages) == sorted(ids)
    assert len(sink.handler.peers) == 1


def test_equal_preference_mx_hosts_are_tried_in_random_order_after_better_ones():
    from appliance.delivery.route import order_mx

    orders = {tuple(order_mx([(20, "b"), (10, "a"), (20, "c"), (30, "d")])) for _ in range(200)}
    assert orders == {("a", "b", "c", "d"), ("a", "c", "b", "d")}


def test_a_destination_never_gets_more_sessions_than_its_cap():
    from appliance.delivery.sessions import SessionCounter

    slots = SessionCounter()
    assert slots.acquire("example.test", 2) and slots.acquire("example.test", 2)
    assert not slots.acquire("example.test", 2)
    assert slots.acquire("other.test", 2)
    slots.release("example.test")
    assert slots.acquire("example.test", 2)
    assert slots.acquire("uncapped.test", None) and slots.busy("example.test") == 2


@pytest.fixture
def pipelining_mx(dns_server, delivery_port):
    from tests.support.sinks import PipeliningSink

    dns_server.mx("pipe.test", (10, "mx.pipe.test"))
    dns_server.a("mx.pipe.test", "127.0.0.6")
    sink = PipeliningSink("127.0.0.6", delivery_port).start()
    yield sink
    sink.stop()


def test_mail_rcpt_and_data_go_in_one_write_when_the_mx_offers_pipelining(relay, account, pipelining_mx):
    with relay.smtp.submission() as client:
        client.login(*account)
        client.sendmail(
            SENDER,
            ["alice@pipe.test", "unknown@pipe.test"],
            b"From: shop@shop.test\r\nSubject: dots\r\n\r\nline\r\n.leading dot\r\n..two\r\n",
        )
    message_id = Message.select().order_by(Message.received_at.desc()).first().id

    rows = settled(message_id, "delivered", "bounced")
    assert [(d.rcpt, d.status) for d in rows] == [("alice@pipe.test", "delivered"), ("unknown@pipe.test", "bounced")]
    assert (
        f"MAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@pipe.test>\r\nRCPT TO:<unknown@pipe.test>\r\nDATA\r\n".encode()
        in pipelining_mx.chunks
    )
    (body,) = pipelining_mx.bodies
    assert body.endswith(b"\r\nline\r\n..leading dot\r\n...two\r\n")  # RFC 5321 §4.5.2 on the wire


def test_with_pipelining_a_message_whose_every_recipient_is_refused_is_ended_empty(relay, account, pipelining_mx):
    first = submit(relay, account, ["unknown1@pipe.test"])
    settled(first, "bounced")
    assert pipelining_mx.bodies == [b""]  # DATA got 354 after all: a lone dot, nothing of the message
    second = submit(relay, account, ["alice@pipe.test"])
    settled(second, "delivered")
    assert len(pipelining_mx.bodies) == 2 and b"Order 1" in pipelining_mx.bodies[1]


class TestNoticesFromInsideTheWriter:
    @pytest.fixture
    def overrides(self, overrides, dns_server, delivery_port):
        # No periodic sweep during the test: only the enqueue made with the notice can send it.
        return relay_overrides(overrides, dns_server, delivery_port, ALERT_EMAILS="ops@shop.test", SWEEP_INTERVAL=3600)

    def test_an_alert_mail_raised_while_recording_a_bounce_goes_out_at_once(
        self, relay, account, dns_server, sink_mx, sender_mx
    ):
        dns_server.mx("example.test", (10, "mx.example.test"))
        dns_server.a("mx.example.test", "127.0.0.3")
        sink_mx("127.0.0.3")
        submit(relay, account, ["unknown.user@example.test"])
        # The delivery-failing alert is raised inside the writer's transaction that records the
        # bounce; its mail is enqueued there, before that commit, and must still be delivered.
        arrived = wait_for(lambda: {r for m in sender_mx.messages for r in m.rcpts} >= {"ops@shop.test", SENDER})
        assert arrived, [m.rcpts for m in sender_mx.messages]
        notice = next(m for m in sender_mx.messages if m.rcpts == ["ops@shop.test"])
        assert b"delivery-failing" in notice.data
