"""Bounces that come back later and complaints, through the return path on bounces.<domain>.

Everything runs for real: mail is delivered to a sink MX, then the remote's report (an RFC 3464
DSN or an RFC 5965 ARF complaint, built with the email package as a remote server would) is sent
to the appliance's MX listener at the return path the sink saw.
"""

from __future__ import annotations

import email
import email.message
import re
import smtplib
from email.message import EmailMessage

import pytest

from appliance import dkim, domains, returnpath
from appliance.models import Alert, Attempt, Delivery, Domain, Message, Suppression
from tests.support.process import cli_json
from tests.support.relay import relay_overrides
from tests.support.wait import wait_for

RETURN_PATH = re.compile(r"bounce\+([0-9a-z]{26})-[0-9a-f]{16}@bounces\.shop\.test")


@pytest.fixture
def overrides(overrides, dns_server, delivery_port):
    return relay_overrides(overrides, dns_server, delivery_port)


@pytest.fixture
def published(app, shop_domain, dns_server):
    """shop.test with every record the domain page asks for published, its bounce MX included."""
    for record in domains.records(shop_domain, "relay.test"):
        value = dkim.zone_value(record.value) if record.type == "TXT" else record.value
        dns_server.add(record.name, record.type, value)
    results = domains.check(Domain.get_by_id(shop_domain.id), app.config)
    assert results["bounce-mx"].status == "pass"
    return shop_domain


@pytest.fixture
def sink(dns_server, sink_mx):
    dns_server.mx("example.test", (10, "mx.example.test"))
    dns_server.a("mx.example.test", "127.0.0.3")
    return sink_mx("127.0.0.3")


def deliver(relay, account, sink, *rcpts: str) -> tuple[str, str]:
    """Send one message from orders@shop.test; return (its id, the return path the MX saw)."""
    with relay.smtp.submission() as client:
        client.login(*account)
        client.sendmail(
            "orders@shop.test", list(rcpts), b"From: Shop <orders@shop.test>\r\nSubject: Order 42\r\n\r\nThank you.\r\n"
        )
    (received,) = wait_for(lambda: sink.messages)
    assert wait_for(lambda: Message.get_by_id(received.queue_id).status == "delivered")
    return received.queue_id, received.mail_from


def report_to_mx(relay, return_path: str, report: EmailMessage | bytes):
    """Send a report to the appliance's port-25 listener from the null sender, as a remote MTA does."""
    with smtplib.SMTP("relay.test", relay.smtp.mx_port, local_hostname="mx.example.test", timeout=20) as client:
        client.starttls(context=relay.smtp.client_context())
        client.ehlo()
        client.mail("<>")
        code, text = client.rcpt(return_path)
        if code != 250:
            return code, text
        data = report if isinstance(report, bytes) else report.as_bytes()
        return client.data(data)


def multipart_report(return_path: str, sender: str, report_type: str, text: str) -> EmailMessage:
    """A multipart/report whose first part is ``text``; the caller attaches the machine-readable parts."""
    report = EmailMessage()
    report["From"], report["To"], report["Subject"] = sender, return_path, f"Report ({report_type})"
    report.set_content(text)
    report.make_mixed()
    report.replace_header("Content-Type", f'multipart/report; report-type="{report_type}"')
    return report


def dsn(
    return_path: str,
    recipient: str,
    action: str = "failed",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
) -> EmailMessage:
    report = multipart_report(
        return_path, "MAILER-DAEMON@mx.example.test", "delivery-status", "Your message could not be delivered.\n"
    )
    per_message, per_recipient = email.message.Message(), email.message.Message()
    per_message["Reporting-MTA"] = "dns; mx.example.test"
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Action"], per_recipient["Status"] = action, status
    per_recipient["Diagnostic-Code"] = diagnostic.format(rcpt=recipient)
    status_part = email.message.Message()
    status_part["Content-Type"] = "message/delivery-status"
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    return report


def arf(return_path: str, recipient: str | None) -> EmailMessage:
    report = multipart_report(
        return_path, "fbl@mailbox.example", "feedback-report", "A user of ours reported this message as spam.\n"
    )
    feedback = EmailMessage()
    feedback.set_payload("Feedback-Type: abuse\nUser-Agent: ExampleFBL/1.0\nVersion: 1\n")
    feedback["Content-Type"] = "message/feedback-report"
    report.attach(feedback)
    original = EmailMessage()
    original.set_payload(
        f"From: orders@shop.test\nTo: {recipient or 'redacted@mailbox.example'}\nSubject: Order 42\n\n"
    )
    original["Content-Type"] = "text/rfc822-headers"
    report.attach(original)
    return report


def test_mail_leaves_with_a_signed_return_path_on_the_bounce_subdomain(app, relay, account, published, sink):
    message_id, mail_from = deliver(relay, account, sink, "alice@example.test")
    match = RETURN_PATH.fullmatch(mail_from)
    assert match and match.group(1) == message_id.lower()
    assert returnpath.message_for(app.config, mail_from) == message_id
    assert Message.get_by_id(message_id).mail_from == "orders@shop.test"  # the log keeps the real sender
    assert b"DKIM-Signature:" in sink.messages[0].data


def test_without_the_bounce_mx_the_envelope_sender_is_kept(relay, account, shop_domain, sink):
    _, mail_from = deliver(relay, account, sink, "alice@example.test")
    assert mail_from == "orders@shop.test"


def test_through_a_smarthost_the_envelope_sender_is_kept(app, published):
    from appliance.delivery.sign import outgoing

    data = b"From: orders@shop.test\r\nSubject: hi\r\n\r\nhi\r\n"
    direct, _ = outgoing(app.config, "01J0000000000000000000000A", "orders@shop.test", data)
    assert direct.startswith("bounce+01j0000000000000000000000a-")
    upstream = {**app.config, "SMARTHOST": "smtp://relay.upstream.test:587"}
    assert outgoing(upstream, "01J0000000000000000000000A", "orders@shop.test", data)[0] == "orders@shop.test"


def test_a_bounce_that_comes_back_later_bounces_the_delivery_suppresses_and_tells_the_sender(
    relay, account, published, sink, run_cli
):
    message_id, return_path = deliver(relay, account, sink, "alice@example.test", "bob@example.test")
    code, text = report_to_mx(relay, return_path, dsn(return_path, "alice@example.test"))
    assert code == 250 and b"queued as" in text

    alice = Delivery.get((Delivery.message == message_id) & (Delivery.rcpt == "alice@example.test"))
    bob = Delivery.get((Delivery.message == message_id) & (Delivery.rcpt == "bob@example.test"))
    assert (alice.status, bob.status) == ("bounced", "delivered")
    assert "550 5.1.1" in alice.last_reply and "reported later by mx.example.test" in alice.last_reply
    assert Message.get_by_id(message_id).status == "partial"
    assert Suppression.get(Suppression.address == "alice@example.test").source == "bounce"
    (later,) = Attempt.select().where((Attempt.delivery == alice.id) & (Attempt.outcome == "bounced"))
    assert (later.code, later.enhanced_code, later.mx_host) == (550, "5.1.1", "mx.example.test")
    assert "timeline:" in run_cli("messages", "show", message_id).output
    # The sender hears of it from the appliance, as for a bounce during the session.
    (notice,) = Message.select().where((Message.mail_from == "") & (Message.direction == "outbound"))
    assert [d.rcpt for d in notice.deliveries] == ["orders@shop.test"]
    # The report itself is kept, like any inbound mail.
    assert Message.select().where(Message.direction == "inbound").count() == 1
    # The admin hears of it as of any bounce of the account's mail.
    (alert,) = Alert.select().where(Alert.kind == "delivery-failing")
    assert alert.subject == f"account {account[0]}" and "alice@example.test" in alert.text
    shown = cli_json(run_cli("messages", "show", message_id, "--json"))["events"]
    later = [e for e in shown if e["type"] == "bounced"]
    assert [(e["recipient"], e["details"]["later"], e["details"]["mx"]) for e in later] == [
        ("alice@example.test", True, "mx.example.test")
    ]


def test_a_complaint_suppresses_the_recipient_as_a_complaint(relay, account, published, sink, run_cli):
    message_id, return_path = deliver(relay, account, sink, "carol@example.test")
    code, _ = report_to_mx(relay, return_path, arf(return_path, None))  # the provider redacted the address
    assert code == 250
    suppressed = Suppression.get(Suppression.address == "carol@example.test")
    assert suppressed.source == "complaint" and "ExampleFBL/1.0" in suppressed.reason
    assert Delivery.get(Delivery.message == message_id).status == "delivered"
    shown = cli_json(run_cli("messages", "show", message_id, "--json"))["events"]
    assert [(e["type"], e["recipient"]) for e in shown] == [
        ("accepted", ""),
        ("delivered", "carol@example.test"),
        ("complained", "carol@example.test"),
    ]
    assert shown[-1]["details"] == {"reporter": "ExampleFBL/1.0"}


@pytest.mark.parametrize("report", ["delayed", "auto-reply", "garbage", "unknown recipient"])
def test_what_is_not_a_failure_of_ours_is_stored_and_changes_nothing(relay, account, published, sink, report):
    message_id, return_path = deliver(relay, account, sink, "alice@example.test")
    body = {
        "delayed": lambda: dsn(
            return_path,
            "alice@example.test",
            action="delayed",
            status="4.4.7",
            diagnostic="smtp; 451 4.4.7 still trying",
        ),
        "auto-reply": lambda: b"From: alice@example.test\r\nSubject: Out of office\r\n\r\nBack Monday.\r\n",
        "garbage": lambda: (
            b"From: MAILER-DAEMON@mx.example.test\r\nContent-Type: multipart/report; "
            b"report-type=delivery-status; boundary=x\r\n\r\n--x\r\nnonsense\r\n"
        ),
        "unknown recipient": lambda: dsn(return_path, "mallory@example.test"),
    }[report]()
    code, _ = report_to_mx(relay, return_path, body)
    assert code == 250
    assert Delivery.get(Delivery.message == message_id).status == "delivered"
    assert Suppression.select().count() == 0
    assert Message.select().where(Message.direction == "inbound").count() == 1


@pytest.mark.parametrize(
    "address",
    [
        "bounce+01hzzzzzzzzzzzzzzzzzzzzzzz-0123456789abcdef@bounces.shop.test",  # a signature we did not make
        "bounce+{id}-0123456789abcdef@bounces.shop.test",  # a real message id, a forged signature
        "bounce+{id}@bounces.shop.test",
    ],
)
def test_a_forged_return_path_is_refused_at_rcpt(relay, account, published, sink, address):
    message_id, return_path = deliver(relay, account, sink, "alice@example.test")
    forged = address.format(id=message_id.lower())
    code, text = report_to_mx(relay, forged, dsn(forged, "alice@example.test"))
    assert (code, text[:5]) == (554, b"5.7.1")
    assert Delivery.get(Delivery.message == message_id).status == "delivered"
    assert email.utils.parseaddr(return_path)[1] != forged


def test_a_report_that_cannot_be_applied_is_not_stored_either_and_gets_451(
    relay, account, published, sink, monkeypatch
):
    from appliance import bounces

    message_id, return_path = deliver(relay, account, sink, "alice@example.test")

    def broken(*args):
        raise RuntimeError("a bug in applying reports")

    monkeypatch.setattr(bounces, "apply", broken)
    code, text = report_to_mx(relay, return_path, dsn(return_path, "alice@example.test"))
    assert (code, text[:5]) == (451, b"4.3.0")  # the remote keeps it and tries again later
    assert Message.select().where(Message.direction == "inbound").count() == 0  # both or neither
    assert Delivery.get(Delivery.message == message_id).status == "delivered"
