"""AUTH only after TLS, PLAIN and LOGIN only, guessing gets nowhere (DESIGN §2.2, §4)."""

from __future__ import annotations

import base64
import smtplib
import threading

import pytest

from appliance import accounts
from appliance.models import SmtpAccount
from tests.support.smtputil import RawSMTP, encrypted_raw, plain


def test_banner_and_ehlo_use_the_configured_hostname(smtp_server):
    raw = RawSMTP("127.0.0.1", smtp_server.starttls_port)
    assert raw.banner[0] == 220 and raw.banner[1].startswith("relay.test ")
    code, text = raw.cmd("EHLO client.test")
    assert code == 250 and text.splitlines()[0] == "relay.test"
    raw.close()


def test_ehlo_advertises_enhanced_status_codes_which_every_reply_carries(smtp_server):
    raw = RawSMTP("127.0.0.1", smtp_server.starttls_port)
    code, text = raw.cmd("EHLO client.test")
    assert code == 250 and "ENHANCEDSTATUSCODES" in text.splitlines() and text.splitlines()[-1] == "HELP"
    assert raw.cmd("MAIL FROM:<shop@shop.test>")[1].split()[0] == "5.7.0"  # AUTH first, with its code
    raw.close()
    with smtp_server.submission() as client:  # after STARTTLS too
        assert client.has_extn("enhancedstatuscodes")


@pytest.mark.parametrize("name", ["localhost", "[127.0.0.1]", "3f2a9c1b7d4e", "[IPv6:::1]", "mail.example.com"])
def test_any_syntactically_valid_ehlo_name_is_accepted(smtp_server, name):
    raw = RawSMTP("127.0.0.1", smtp_server.starttls_port)
    assert raw.cmd(f"EHLO {name}")[0] == 250
    raw.close()


def test_starttls_port_does_not_offer_auth_before_tls_and_refuses_it_with_538(smtp_server, account):
    username, password = account
    raw = RawSMTP("127.0.0.1", smtp_server.starttls_port)
    code, text = raw.cmd("EHLO client.test")
    assert "STARTTLS" in text and "AUTH" not in text
    code, text = raw.cmd(f"AUTH PLAIN {plain(username, password)}")
    assert (code, text) == (538, "5.7.11 Encryption required for requested authentication mechanism")
    raw.close()


def test_after_starttls_only_plain_and_login_are_offered(smtp_server):
    with smtp_server.submission() as client:
        mechanisms = client.esmtp_features["auth"].split()
    assert sorted(mechanisms) == ["LOGIN", "PLAIN"]


def test_implicit_tls_port_offers_and_accepts_auth(smtp_server, account):
    username, password = account
    with smtp_server.implicit() as client:
        assert sorted(client.esmtp_features["auth"].split()) == ["LOGIN", "PLAIN"]
        assert client.login(username, password)[0] == 235


def test_login_challenges_are_plain_base64_without_nul_bytes(smtp_server, account):
    """aiosmtpd's default challenges embed NUL, which curl and Go clients reject (aiosmtpd#566)."""
    username, password = account
    raw = encrypted_raw(smtp_server)
    code, challenge = raw.cmd("AUTH LOGIN")
    assert code == 334 and base64.b64decode(challenge) == b"Username:"
    code, challenge = raw.cmd(base64.b64encode(username.encode()).decode())
    assert code == 334 and base64.b64decode(challenge) == b"Password:"
    assert raw.cmd(base64.b64encode(password.encode()).decode())[0] == 235
    raw.close()


def test_a_successful_login_is_recorded_on_the_account(app, smtp_server, account):
    username, password = account
    with smtp_server.submission() as client:
        client.login(username, password)
    with app.app_context():
        row = SmtpAccount.get(SmtpAccount.username == username)
    assert row.last_login_at is not None and row.last_login_ip == "127.0.0.1"


def test_a_wrong_password_gets_535_with_a_hint_and_is_recorded(app, smtp_server, account):
    username, _ = account
    with smtp_server.submission() as client, pytest.raises(smtplib.SMTPAuthenticationError) as caught:
        client.login(username, "not-the-password")
    assert caught.value.smtp_code == 535
    assert caught.value.smtp_error.startswith(b"5.7.8 Authentication credentials invalid")
    assert b"not the dashboard login" in caught.value.smtp_error
    with app.app_context():
        row = SmtpAccount.get(SmtpAccount.username == username)
    assert row.last_failure_reason == accounts.WRONG_PASSWORD and row.last_failure_ip == "127.0.0.1"


def test_the_third_failure_in_one_connection_gets_421_and_the_connection_closes(smtp_server, account):
    username, _ = account
    raw = encrypted_raw(smtp_server)
    assert raw.cmd(f"AUTH PLAIN {plain(username, 'guess-1')}")[0] == 535
    assert raw.cmd(f"AUTH PLAIN {plain(username, 'guess-2')}")[0] == 535
    code, text = raw.cmd(f"AUTH PLAIN {plain(username, 'guess-3')}")
    assert (code, text) == (421, "4.7.0 Too many failed authentication attempts, try later")
    assert raw.closed_by_server()


@pytest.fixture
def strict_ip_throttle(overrides):
    overrides.update(AUTH_FAILURES_PER_IP=4, AUTH_FAILURE_WINDOW=600, AUTH_COOLDOWN=600)
    return overrides


def test_a_burst_of_failures_from_one_ip_cools_that_ip_down_but_not_others(strict_ip_throttle, smtp_server, account):
    username, password = account
    for _ in range(2):  # two connections, two failures each: the fourth failure starts the cool-down
        client = smtp_server.submission(source_ip="127.0.0.2")
        for _ in range(2):
            with pytest.raises(smtplib.SMTPException):
                client.login(username, "wrong")
        client.close()
    client = smtp_server.submission(source_ip="127.0.0.2")
    code, text = client.docmd("AUTH", f"PLAIN {plain(username, password)}")
    assert (code, text) == (421, b"4.7.0 Too many failed authentication attempts, try later")
    client.close()
    with smtp_server.submission(source_ip="127.0.0.1") as other:
        assert other.login(username, password)[0] == 235


def test_a_disabled_account_is_refused_even_with_the_right_password(app, smtp_server, account, run_cli):
    username, password = account
    assert run_cli("accounts", "disable", username).exit_code == 0
    with smtp_server.submission() as client, pytest.raises(smtplib.SMTPAuthenticationError) as caught:
        client.login(username, password)
    assert caught.value.smtp_error == b"5.7.8 Authentication refused: this SMTP account is disabled"
    with app.app_context():
        assert SmtpAccount.get(SmtpAccount.username == username).last_failure_reason == accounts.ACCOUNT_DISABLED
    assert run_cli("accounts", "enable", username).exit_code == 0
    with smtp_server.submission() as client:
        assert client.login(username, password)[0] == 235


def test_password_verification_runs_off_the_event_loop(smtp_server, account, monkeypatch):
    seen = []
    real = accounts.verify

    def spy(*args, **kwargs):
        seen.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(accounts, "verify", spy)
    username, password = account
    with smtp_server.submission() as client:
        client.login(username, password)
    assert seen and all(name.startswith("smtp-work") for name in seen)


@pytest.fixture
def two_connections_max(overrides):
    overrides["MAX_CONNECTIONS"] = 2
    return overrides


def test_connections_beyond_the_cap_get_421(two_connections_max, smtp_server):
    first = RawSMTP("127.0.0.1", smtp_server.starttls_port)
    second = RawSMTP("127.0.0.1", smtp_server.mx_port)
    third = RawSMTP("127.0.0.1", smtp_server.starttls_port)
    assert first.banner[0] == 220 and second.banner[0] == 220
    assert third.banner == (421, "4.7.0 Too many connections, try later")
    assert third.closed_by_server()
    first.cmd("QUIT")
    first.close()
    assert first.closed_by_server()
    fourth = RawSMTP("127.0.0.1", smtp_server.starttls_port)
    assert fourth.banner[0] == 220
    for c in (second, third, fourth):
        c.close()
