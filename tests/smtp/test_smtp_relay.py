"""No open relay: who may send where."""

from __future__ import annotations

import pytest

from appliance.models import Message
from tests.support.smtputil import RawSMTP


def test_submission_port_wants_auth_for_mail_and_rcpt(smtp_server):
    with smtp_server.submission() as client:
        assert client.docmd("MAIL FROM:<a@shop.test>") == (530, b"5.7.0 Authentication required")
        assert client.docmd("RCPT TO:<b@example.com>") == (530, b"5.7.0 Authentication required")


def test_implicit_tls_port_wants_auth_for_mail(smtp_server):
    with smtp_server.implicit() as client:
        assert client.docmd("MAIL FROM:<a@shop.test>") == (530, b"5.7.0 Authentication required")


@pytest.mark.parametrize(
    "rcpt",
    [
        "victim@example.com",
        "VICTIM@EXAMPLE.COM",
        "user%example.com@relay.test",
        "example.com!user@relay.test",
        '"user@example.com"@relay.test',
        "@relay.test:user@example.com",
        "user@[127.0.0.1]",
        "user@relay.test.example.com",
        "relay.test@example.com",
    ],
)
def test_no_open_relay_whatever_the_address_trickery(smtp_server, rcpt):
    raw = RawSMTP("127.0.0.1", smtp_server.mx_port)
    raw.cmd("EHLO attacker.example")
    assert raw.cmd("MAIL FROM:<spammer@example.net>")[0] == 250
    assert raw.cmd(f"RCPT TO:<{rcpt}>") == (554, "5.7.1 Relay access denied")
    raw.close()


def test_mail_for_a_local_domain_is_accepted_without_auth_on_the_mx_port(app, smtp_server):
    raw = RawSMTP("127.0.0.1", smtp_server.mx_port)
    raw.cmd("EHLO mx.example.net")
    assert raw.cmd("MAIL FROM:<>")[0] == 250  # a bounce from a remote MTA
    assert raw.cmd("RCPT TO:<Postmaster@RELAY.TEST>")[0] == 250
    assert raw.cmd("DATA")[0] == 354
    raw.send(b"From: MAILER-DAEMON@example.net\r\nSubject: bounce\r\n\r\nsorry\r\n.\r\n")
    code, text = raw.reply()
    assert code == 250
    message_id = text.removeprefix("Ok: queued as ")
    with app.app_context():
        stored = Message.get_by_id(message_id)
    assert (stored.direction, stored.status, stored.mail_from) == ("inbound", "received", "")
    raw.close()


@pytest.fixture
def authed(smtp_server, account):
    client = smtp_server.submission()
    client.login(*account)
    yield client
    client.close()


@pytest.mark.parametrize(
    ("sender", "reply"),
    [
        ("no-at-sign", (553, b"5.1.7 Bad sender address: no domain (expected local-part@domain)")),
        ("a@bad_domain!.com", (553, b"5.1.7 Bad sender address: invalid domain 'bad_domain!.com'")),
        ("a@[127.0.0.1]", (553, b"5.1.7 Bad sender address: IP-literal domains are not accepted")),
        ("@example.com", (501, b"5.1.3 Malformed address: expected <local-part@domain>")),
    ],
)
def test_bad_sender_syntax_gets_a_5xx_with_a_reason(authed, sender, reply):
    assert authed.docmd(f"MAIL FROM:<{sender}>") == reply


def test_an_unclosed_angle_bracket_is_a_malformed_address(authed):
    assert authed.docmd("MAIL FROM:<a@example.com") == (501, b"5.1.3 Malformed address: expected <local-part@domain>")


@pytest.mark.parametrize("rcpt", ["no-at-sign", "a@[10.0.0.1]", "a@-bad-.example", "<>"])
def test_bad_recipient_syntax_gets_a_5xx_with_a_reason(authed, rcpt):
    authed.docmd("MAIL FROM:<a@shop.test>")
    code, text = authed.docmd(f"RCPT TO:<{rcpt}>" if rcpt != "<>" else "RCPT TO:<>")
    assert code in (501, 553) and text.startswith(b"5.")


def test_an_authenticated_client_may_relay_and_use_the_null_sender(authed):
    assert authed.docmd("MAIL FROM:<>")[0] == 250
    assert authed.docmd("RCPT TO:<someone@example.com>")[0] == 250


def test_an_ip_only_account_sends_without_auth_from_its_network_only(smtp_server, run_cli):
    result = run_cli("accounts", "create", "Printer", "--ip", "127.0.0.1/32", "--ip-only")
    assert result.exit_code == 0, result.output
    assert run_cli("senders", "add", "scanner@office.test", "--verified").exit_code == 0
    with smtp_server.submission(starttls=False) as client:
        assert client.docmd("MAIL FROM:<scanner@office.test>")[0] == 250
        assert client.docmd("RCPT TO:<boss@example.com>")[0] == 250
    with smtp_server.submission(source_ip="127.0.0.2", starttls=False) as client:
        assert client.docmd("MAIL FROM:<scanner@office.test>")[0] == 530
