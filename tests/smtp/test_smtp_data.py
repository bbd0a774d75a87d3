"""DATA: size and recipient limits, line endings, stamped headers, malformed input."""

from __future__ import annotations

import email
import email.policy

import peewee
import pytest

from appliance import intake
from appliance.models import Delivery, Message, MessageBody
from tests.support.smtputil import authenticated_raw


def send(raw, data: bytes, rcpts=("b@example.com",), sender="a@shop.test") -> tuple[int, str]:
    assert raw.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    for rcpt in rcpts:
        assert raw.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert raw.cmd("DATA")[0] == 354
    raw.send(data + b"\r\n.\r\n")
    return raw.reply()


def stored(app, message_id: str) -> tuple[Message, bytes]:
    with app.app_context():
        return Message.get_by_id(message_id), bytes(MessageBody.get_by_id(message_id).data)


@pytest.fixture
def raw(smtp_server, account):
    session = authenticated_raw(smtp_server, *account)
    yield session
    session.close()


def test_size_is_advertised_with_the_default_limit(smtp_server):
    with smtp_server.submission() as client:
        assert client.esmtp_features["size"] == str(25 * 1024 * 1024)


@pytest.fixture
def small_limits(overrides):
    overrides.update(MAX_MESSAGE_SIZE=4000, MAX_RECIPIENTS=3)
    return overrides


def test_a_declared_size_over_the_limit_is_refused_at_mail_from(small_limits, raw):
    assert raw.cmd("MAIL FROM:<a@shop.test> SIZE=5000") == (552, "5.3.4 Message size exceeds limit")


def test_a_message_over_the_limit_gets_552_and_the_session_goes_on(small_limits, app, raw):
    big = b"From: a@shop.test\r\nSubject: big\r\n\r\n" + b"x" * 70 * 100
    assert send(raw, big.replace(b"x" * 70, b"x" * 68 + b"\r\n")) == (552, "5.3.4 Message size exceeds limit")
    code, text = send(raw, b"From: a@shop.test\r\nSubject: small\r\n\r\nok")
    assert code == 250
    with app.app_context():
        assert [m.subject for m in Message.select()] == ["small"]


def test_recipients_beyond_the_cap_get_452(small_limits, raw):
    raw.cmd("MAIL FROM:<a@shop.test>")
    for n in range(3):
        assert raw.cmd(f"RCPT TO:<r{n}@example.com>")[0] == 250
    assert raw.cmd("RCPT TO:<r3@example.com>") == (452, "4.5.3 Too many recipients")


def test_bare_lf_and_cr_cannot_smuggle_a_second_message(app, raw):
    payload = (
        b"From: a@shop.test\r\nSubject: one\r\n\r\nfirst line\n.\nMAIL FROM:<evil@example.net>\n"
        b"RCPT TO:<victim@example.org>\nDATA\nSubject: smuggled\r.\rlast line"
    )
    code, text = send(raw, payload)
    assert code == 250
    assert raw.cmd("NOOP")[0] == 250  # the session is still in step
    with app.app_context():
        assert Message.select().count() == 1
        assert Delivery.select().count() == 1
    message, data = stored(app, text.removeprefix("Ok: queued as "))
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    assert b"\r\nMAIL FROM:<evil@example.net>\r\n" in data  # kept as body text, never as a command


def test_received_message_id_and_date_headers_are_added(app, raw):
    code, text = send(raw, b"From: a@shop.test\r\nSubject: stamps\r\n\r\nbody")
    message_id = text.removeprefix("Ok: queued as ")
    message, data = stored(app, message_id)
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    received = parsed["Received"]
    assert "by relay.test" in received and "ESMTPSA" in received
    assert "TLSv1.3" in received or "TLSv1.2" in received
    assert "authenticated as 1.shop.smtp" in received and f"id {message_id}" in received
    assert parsed["Message-ID"] == f"<{message_id}@relay.test>"
    assert parsed["Date"] is not None
    assert message.tls.startswith("TLSv1.")


def test_existing_message_id_and_date_are_kept(app, raw):
    original = b"From: a@shop.test\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\nMessage-ID: <abc@shop.test>\r\n\r\nb"
    code, text = send(raw, original)
    _, data = stored(app, text.removeprefix("Ok: queued as "))
    parsed = email.message_from_bytes(data)
    assert parsed.get_all("Message-ID") == ["<abc@shop.test>"]
    assert parsed.get_all("Date") == ["Mon, 2 Nov 2026 10:00:00 +0000"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"this is not a header\r\nFrom: a@shop.test\r\n\r\nbody", "header line 1 is not a 'Name: value' field"),
        (b" folded first\r\nFrom: a@shop.test\r\n\r\nbody", "the first header line is a continuation line"),
        (b"From: a@shop.test\r\nSubject x\r\n\r\nbody", "header line 2 is not a 'Name: value' field"),
        (b"Subject: no sender\r\n\r\nbody", "there is no From: header"),
        (b"\r\nbody only", "there is no From: header"),
    ],
)
def test_malformed_headers_get_554_and_nothing_is_stored(app, raw, data, reason):
    code, text = send(raw, data)
    assert code == 554 and text.startswith(f"5.6.0 Malformed message: {reason}")
    assert raw.cmd("NOOP")[0] == 250
    with app.app_context():
        assert Message.select().count() == 0


def test_a_line_longer_than_1000_octets_is_refused(app, raw):
    code, text = send(raw, b"From: a@shop.test\r\n\r\n" + b"y" * 1200)
    assert code == 500 and text.startswith("5.5.2 Line too long")
    with app.app_context():
        assert Message.select().count() == 0


def test_priority_headers_raise_the_delivery_priority(app, raw):
    code, text = send(raw, b"From: a@shop.test\r\nX-Priority: 1 (Highest)\r\nSubject: urgent\r\n\r\nnow")
    message_id = text.removeprefix("Ok: queued as ")
    with app.app_context():
        assert Message.get_by_id(message_id).priority == 1
        assert [d.priority for d in Delivery.select().where(Delivery.message == message_id)] == [1]


def test_utf8_addresses_and_encoded_subjects_are_accepted(app, smtp_server, account):
    raw = authenticated_raw(smtp_server, *account)
    assert raw.cmd("MAIL FROM:<josé@shop.test> SMTPUTF8")[0] == 250
    assert raw.cmd("RCPT TO:<zoë@example.com>")[0] == 250
    assert raw.cmd("DATA")[0] == 354
    raw.send("From: josé@shop.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\n\r\nolá\r\n.\r\n".encode())
    code, text = raw.reply()
    message, _ = stored(app, text.removeprefix("Ok: queued as "))
    assert (message.mail_from, message.subject) == ("josé@shop.test", "café")
    raw.close()


def test_a_database_error_gets_451_and_leaves_nothing_half_stored(app, raw, monkeypatch):
    real_store_many = intake.store_many

    def store_then_fail(items):
        real_store_many(items)  # the rows are written inside the transaction ...
        raise peewee.OperationalError("simulated failure")  # ... and must be rolled back

    monkeypatch.setattr(intake, "store_many", store_then_fail)
    assert send(raw, b"From: a@shop.test\r\n\r\nx") == (451, "4.3.0 Temporary local problem, try later")
    monkeypatch.setattr(intake, "store_many", real_store_many)
    with app.app_context():
        assert (Message.select().count(), MessageBody.select().count(), Delivery.select().count()) == (0, 0, 0)
    assert send(raw, b"From: a@shop.test\r\n\r\nagain")[0] == 250


def test_dot_stuffed_lines_come_back_exactly_as_the_client_meant_them(app, raw):
    body = b"..leading dot\r\n..\r\nRegards.\r\nend."
    code, text = send(raw, b"From: a@shop.test\r\nSubject: dots\r\n\r\n" + body)
    assert code == 250
    _, data = stored(app, text.removeprefix("Ok: queued as "))
    assert data.endswith(b"\r\n\r\n.leading dot\r\n.\r\nRegards.\r\nend.\r\n")


def test_a_long_message_read_in_many_pieces_is_stored_byte_for_byte(app, raw):
    lines = [f"line {n:05d} ".encode() + b"x" * 60 for n in range(4000)]  # about 280 KB
    code, text = send(raw, b"From: a@shop.test\r\nSubject: long\r\n\r\n" + b"\r\n".join(lines))
    assert code == 250
    _, data = stored(app, text.removeprefix("Ok: queued as "))
    assert data.endswith(b"\r\n\r\n" + b"\r\n".join(lines) + b"\r\n")


def test_a_line_of_1000_octets_with_its_crlf_is_accepted_and_one_more_is_not(app, raw):
    assert send(raw, b"From: a@shop.test\r\n\r\n" + b"y" * 998)[0] == 250
    assert send(raw, b"From: a@shop.test\r\n\r\n" + b"y" * 1000)[0] == 500


def test_commands_pipelined_after_the_final_dot_are_answered_in_order(raw):
    raw.cmd("MAIL FROM:<a@shop.test>")
    raw.cmd("RCPT TO:<b@example.com>")
    assert raw.cmd("DATA")[0] == 354
    raw.send(b"From: a@shop.test\r\nSubject: pipelined\r\n\r\nhi\r\n.\r\nNOOP\r\nRSET\r\n")
    assert raw.reply()[0] == 250  # the message
    assert raw.reply() == (250, "OK")  # NOOP
    assert raw.reply() == (250, "OK")  # RSET


def test_an_empty_message_ends_at_a_first_line_dot_and_is_refused_for_its_missing_from(app, raw):
    raw.cmd("MAIL FROM:<a@shop.test>")
    raw.cmd("RCPT TO:<b@example.com>")
    assert raw.cmd("DATA")[0] == 354
    raw.send(b".\r\n")
    assert raw.reply() == (554, "5.6.0 Malformed message: there is no From: header")
    with app.app_context():
        assert Message.select().count() == 0


def test_an_unexpected_error_is_a_temporary_local_problem_not_a_bare_500(app, raw, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug of ours")

    monkeypatch.setattr(intake, "prepare", broken)
    assert send(raw, b"From: a@shop.test\r\n\r\nx") == (451, "4.3.0 Temporary local problem, try later")
    assert raw.cmd("NOOP")[0] == 250  # the session goes on
    with app.app_context():
        assert Message.select().count() == 0


def test_the_long_line_check_agrees_with_splitting_the_message_into_lines():
    import random

    from appliance.message_bytes import has_long_line

    pieces = [b"x" * 998, b"x" * 999, b"x" * 1000, b"x" * 1500, b"y" * 40, b"\r", b"\n", b"\r\n", b"\r\n\r\n", b"a\rb"]
    rng = random.Random(7)
    for _ in range(5000):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 8)))
        for limit in (999, 40, 1):
            assert has_long_line(data, limit) == (max(map(len, data.split(b"\r\n"))) > limit), (data[:80], limit)
