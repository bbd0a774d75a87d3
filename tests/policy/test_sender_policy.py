"""Sender authorization at MAIL FROM and on the From: header: verified senders and domains, each
account's authorized domains and senders, block and alert modes (the rule, then real SMTP sessions)."""

from __future__ import annotations

import pytest

from appliance import senders
from appliance.models import Alert, Message, SmtpAccount
from appliance.policy import acceptance
from tests.support.relay import verify_domain
from tests.support.smtputil import authenticated_raw


def decide(address, *, verified=True, domains=(), allowed=(), mode="block", header=False):
    return acceptance.sender_authorization(
        address,
        header=header,
        verified=verified,
        authorized_domains=list(domains),
        authorized_senders=list(allowed),
        mode=mode,
    )


@pytest.mark.parametrize(
    ("case", "kwargs", "reason"),
    [
        ("verified, no lists", dict(address="a@shop.test"), None),
        ("null sender", dict(address="", verified=False), None),
        ("unverified", dict(address="a@evil.test", verified=False), "sender-not-verified"),
        ("unreadable From:", dict(address="", verified=False, header=True), "sender-not-verified"),
        ("in authorized domains", dict(address="a@shop.test", domains=["shop.test"]), None),
        ("in authorized senders", dict(address="A@other.test", allowed=["a@other.test"], domains=["shop.test"]), None),
        ("outside the lists, block", dict(address="a@other.test", domains=["shop.test"]), "sender-not-authorized"),
        (
            "outside the lists, alert",
            dict(address="a@other.test", domains=["shop.test"], mode="alert"),
            "sender-not-authorized-allowed",
        ),
        (
            "a plain domain is that domain alone",
            dict(address="a@news.shop.test", domains=["shop.test"]),
            "sender-not-authorized",
        ),
        ("*. covers a subdomain", dict(address="a@news.shop.test", domains=["*.shop.test"]), None),
        ("*. covers a deeper subdomain", dict(address="a@eu.news.shop.test", domains=["*.shop.test"]), None),
        ("*. covers the domain itself", dict(address="a@Shop.Test", domains=["*.shop.test"]), None),
        (
            "*. never covers a look-alike",
            dict(address="a@evilshop.test", domains=["*.shop.test"]),
            "sender-not-authorized",
        ),
        (
            "*. never covers a domain that only starts alike",
            dict(address="a@shop.test.evil.test", domains=["*.shop.test"]),
            "sender-not-authorized",
        ),
        ("*. never covers its parent", dict(address="a@test", domains=["*.shop.test"]), "sender-not-authorized"),
    ],
)
def test_the_sender_rule_decides_each_case(case, kwargs, reason):
    decision = decide(kwargs.pop("address"), **kwargs)
    assert (decision.reason if decision else None) == reason


@pytest.mark.parametrize(
    "value",
    [
        "orders@shop.test",
        "  orders@shop.test ",
        "<orders@shop.test>",
        "Shop <orders@shop.test>",
        "=?utf-8?q?Caf=C3=A9?= <cafe@shop.test>",
        "J. Doe <j@shop.test>",
        '"Doe, J" <j@shop.test>',
        "a@shop.test, b@shop.test",
        "Shop (sales) <orders@shop.test>",
        "undisclosed-recipients:;",
        "",
        "no address",
        "<>",
        "x@[127.0.0.1]",
        "Ünïcode <u@shop.test>",
        "a@b@shop.test",
    ],
)
def test_from_addresses_read_by_the_fast_path_match_the_email_package(value):
    import email.utils

    assert acceptance.header_addresses(value) == [a for _, a in email.utils.getaddresses([value])]


def test_a_refusal_is_553_5_7_1_and_says_why_while_alert_mode_accepts():
    unverified = decide("a@evil.test", verified=False)
    assert unverified.reply == "553 5.7.1 Sender address not authorized: a@evil.test is not a verified sender or domain"
    forged = decide("ceo@bank.test", verified=False, header=True)
    assert "From: header address ceo@bank.test" in forged.reply and forged.reply.startswith("553 5.7.1")
    assert acceptance.refuses(decide("a@other.test", domains=["shop.test"]))
    assert not acceptance.refuses(decide("a@other.test", domains=["shop.test"], mode="alert"))


def send(raw, mail_from: str, from_header: str) -> tuple[int, str]:
    code, text = raw.cmd(f"MAIL FROM:<{mail_from}>")
    if code != 250:
        return code, text
    assert raw.cmd("RCPT TO:<bob@example.com>")[0] == 250
    assert raw.cmd("DATA")[0] == 354
    raw.send(f"From: {from_header}\r\nSubject: hi\r\n\r\nhello\r\n.\r\n".encode())
    return raw.reply()


@pytest.fixture
def session(smtp_server, account):
    raw = authenticated_raw(smtp_server, *account)
    yield raw
    raw.close()


def restrict(username: str, **fields) -> None:
    SmtpAccount.update(**fields).where(SmtpAccount.username == username).execute()


def test_an_unverified_sender_is_refused_at_mail_from_with_the_reason(session, account):
    assert session.cmd("MAIL FROM:<someone@unknown.test>") == (
        553,
        "5.7.1 Sender address not authorized: someone@unknown.test is not a verified sender or domain",
    )
    alert = Alert.get(Alert.kind == "unauthorized-sender-blocked")
    assert alert.subject == f"account {account[0]}" and "someone@unknown.test" in alert.text


def test_a_sender_of_a_verified_domain_or_a_verified_address_is_accepted(session):
    assert send(session, "a@shop.test", "Shop <a@shop.test>")[0] == 250
    senders.add("me@gmail.test", verified_by_admin=True)
    assert send(session, "me@gmail.test", "me@gmail.test")[0] == 250
    assert Message.select().count() == 2 and not Alert.select().exists()


def test_a_forged_from_header_behind_an_allowed_envelope_sender_is_refused_and_nothing_is_stored(session):
    code, text = send(session, "a@shop.test", "Your Bank <security@bank.test>")
    assert (code, text) == (
        553,
        "5.7.1 Sender address not authorized: the From: header address "
        "security@bank.test is not a verified sender or domain",
    )
    assert not Message.select().exists()
    assert "From: header security@bank.test" in Alert.get(Alert.kind == "unauthorized-sender-blocked").text


def test_block_mode_refuses_a_verified_sender_outside_the_account_lists_and_alerts(session, account):
    senders.add("news@other.test", verified_by_admin=True)
    restrict(account[0], authorized_domains="shop.test", sender_mode="block")
    assert session.cmd("MAIL FROM:<news@other.test>") == (
        553,
        "5.7.1 Sender address not authorized: this account may not send as news@other.test",
    )
    session.cmd("RSET")
    assert send(session, "a@shop.test", "a@shop.test")[0] == 250
    session.cmd("RSET")
    assert session.cmd("MAIL FROM:<news@other.test>")[0] == 553
    alert = Alert.get(Alert.kind == "unauthorized-sender-blocked")
    assert alert.count == 2 and alert.first_seen <= alert.last_seen


def test_alert_mode_accepts_a_sender_outside_the_lists_and_raises_an_alert(session, account):
    senders.add("news@other.test", verified_by_admin=True)
    restrict(account[0], authorized_senders="a@shop.test", sender_mode="alert")
    assert send(session, "news@other.test", "news@other.test")[0] == 250
    assert Message.select().count() == 1
    alert = Alert.get(Alert.kind == "unauthorized-sender-allowed")
    assert alert.count == 2  # MAIL FROM, then the From: header
    assert "accepted: alert mode" in alert.text


def test_the_null_sender_is_accepted_but_its_from_header_is_still_checked(session):
    assert session.cmd("MAIL FROM:<>")[0] == 250
    session.cmd("RSET")
    assert send(session, "", "MAILER-DAEMON@elsewhere.test")[0] == 553


@pytest.fixture
def look_alike(app):
    """evilshop.test verified too, so that only the account's authorized domains can refuse it."""
    with app.app_context():
        return verify_domain("evilshop.test")


def test_block_mode_with_a_subdomain_entry_accepts_a_subdomain_and_refuses_a_look_alike(session, account, look_alike):
    restrict(account[0], authorized_domains="*.shop.test", sender_mode="block")
    assert send(session, "orders@news.shop.test", "Shop news <orders@news.shop.test>")[0] == 250
    session.cmd("RSET")
    assert send(session, "orders@shop.test", "orders@shop.test")[0] == 250
    session.cmd("RSET")
    assert session.cmd("MAIL FROM:<orders@evilshop.test>") == (
        553,
        "5.7.1 Sender address not authorized: this account may not send as orders@evilshop.test",
    )
    session.cmd("RSET")
    assert send(session, "orders@news.shop.test", "Shop <orders@evilshop.test>") == (
        553,
        "5.7.1 Sender address not authorized: this account may not send with the From: header address "
        "orders@evilshop.test",
    )
    assert [m.mail_from for m in Message.select().order_by(Message.id)] == ["orders@news.shop.test", "orders@shop.test"]
    alert = Alert.get(Alert.kind == "unauthorized-sender-blocked")
    assert alert.count == 2 and "From: header orders@evilshop.test" in alert.text


def test_a_plain_authorized_domain_refuses_its_subdomain_at_mail_from(session, account):
    restrict(account[0], authorized_domains="shop.test", sender_mode="block")
    assert session.cmd("MAIL FROM:<orders@news.shop.test>")[0] == 553
    assert Alert.get(Alert.kind == "unauthorized-sender-blocked").subject == f"account {account[0]}"


def test_alert_mode_with_a_subdomain_entry_accepts_a_look_alike_and_alerts_only_for_it(session, account, look_alike):
    restrict(account[0], authorized_domains="*.shop.test", sender_mode="alert")
    assert send(session, "orders@news.shop.test", "orders@news.shop.test")[0] == 250
    assert not Alert.select().exists()
    session.cmd("RSET")
    assert send(session, "orders@news.shop.test", "Shop <orders@evilshop.test>")[0] == 250
    assert Message.select().count() == 2
    alert = Alert.get(Alert.kind == "unauthorized-sender-allowed")
    assert alert.count == 1 and "From: header orders@evilshop.test" in alert.text and "alert mode" in alert.text
