"""Regression tests of what an attacker and careless clients found (docs/security.md lists them).

Each test is named after its finding and goes through the real interface: SMTP sockets, curl,
the dashboard over HTTP, the CLI.
"""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import threading
import time

import pytest

from appliance import accounts, admins, message_bytes
from appliance.models import Alert, Message, MessageBody, Sender, SmtpAccount, Suppression
from tests.support.relay import verify_domain
from tests.support.smtputil import RawSMTP, authenticated_raw, encrypted_raw, plain
from tests.web.conftest import ADMIN, Dashboard


def send(raw: RawSMTP, data: bytes, sender: str = "alice@shop.example", rcpt: str = "bob@example.com"):
    assert raw.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    assert raw.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert raw.cmd("DATA")[0] == 354
    raw.send(data + b"\r\n.\r\n")
    return raw.reply()


def stored_count(app) -> int:
    with app.app_context():
        return Message.select().count()


@pytest.fixture
def alice(app, run_cli):
    """An account in block mode allowed only alice@shop.example (the attacker's account)."""
    with app.app_context():
        verify_domain("shop.example")
        verify_domain("paypal.example")  # verified for someone else: the account lists still refuse it
        account, password = accounts.create("Alice")
    assert (
        run_cli(
            "accounts", "edit", account.username, "--authorized-senders", "alice@shop.example", "--sender-mode", "block"
        ).exit_code
        == 0
    )
    return account.username, password


# -- finding 1: sender forgery ---------------------------------------------------------------------
def test_sender_forgery_a_second_from_header_is_refused_with_554_and_nothing_is_relayed(app, smtp_server, alice):
    raw = authenticated_raw(smtp_server, *alice)
    forged = (
        b'From: <alice@shop.example>\r\nFrom: "PayPal Security" <security@paypal.example>\r\n'
        b"Subject: Your account\r\n\r\nPlease log in."
    )
    code, text = send(raw, forged)
    assert (code, text) == (554, "5.6.0 Malformed message: more than one From: header (RFC 5322 3.6 allows one)")
    assert raw.cmd("NOOP")[0] == 250
    raw.close()
    assert stored_count(app) == 0


def test_sender_forgery_a_second_sender_header_is_refused_with_554(app, smtp_server, alice):
    raw = authenticated_raw(smtp_server, *alice)
    code, text = send(
        raw, b"From: alice@shop.example\r\nSender: alice@shop.example\r\nSender: security@paypal.example\r\n\r\nhi"
    )
    assert code == 554 and text.startswith("5.6.0 Malformed message: more than one Sender: header")
    raw.close()
    assert stored_count(app) == 0


@pytest.mark.parametrize(
    "header",
    [
        b"From: alice@shop.example, security@paypal.example",  # a second address in the one From:
        b"From: alice@shop.example\r\nSender: security@paypal.example",  # Sender: is shown by clients too
    ],
)
def test_sender_forgery_every_from_and_sender_address_is_authorized(app, smtp_server, alice, header):
    raw = authenticated_raw(smtp_server, *alice)
    code, text = send(raw, header + b"\r\nSubject: hi\r\n\r\nhi")
    field = "Sender:" if b"Sender" in header else "From:"
    assert (code, text) == (
        553,
        "5.7.1 Sender address not authorized: this account may not send with the "
        f"{field} header address security@paypal.example",
    )
    raw.close()
    assert stored_count(app) == 0
    with app.app_context():
        assert f"{field} header security@paypal.example" in Alert.get(Alert.kind == "unauthorized-sender-blocked").text


def test_sender_forgery_in_alert_mode_a_sender_header_outside_the_lists_is_accepted_and_alerted(
    app, smtp_server, alice, run_cli
):
    assert run_cli("accounts", "edit", alice[0], "--sender-mode", "alert").exit_code == 0
    raw = authenticated_raw(smtp_server, *alice)
    code, _ = send(raw, b"From: alice@shop.example\r\nSender: security@paypal.example\r\n\r\nhi")
    assert code == 250
    raw.close()
    with app.app_context():
        assert "Sender: header security@paypal.example" in Alert.get(Alert.kind == "unauthorized-sender-allowed").text


def test_sender_forgery_an_authorized_from_and_sender_are_accepted(app, smtp_server, alice):
    raw = authenticated_raw(smtp_server, *alice)
    assert send(raw, b"From: Alice <alice@shop.example>\r\nSender: alice@shop.example\r\n\r\nhi")[0] == 250
    raw.close()


# -- finding 2: one message stalls everyone -------------------------------------------------------
def folded_header(lines: int) -> bytes:
    """A From: and a Subject: folded over ``lines`` continuation lines (about 80 octets each)."""
    return (
        b"From: alice@shop.example\r\nSubject: start\r\n"
        + b"".join(b"\tcontinued line %06d " % n + b"x" * 56 + b"\r\n" for n in range(lines))
        + b"\r\nbody"
    )


def test_one_message_stalls_everyone_a_header_folded_over_150000_lines_is_refused_and_others_get_through(
    app, smtp_server, alice
):
    big, small = authenticated_raw(smtp_server, *alice), authenticated_raw(smtp_server, *alice)
    assert big.cmd("MAIL FROM:<alice@shop.example>")[0] == 250
    assert big.cmd("RCPT TO:<bob@example.com>")[0] == 250
    assert big.cmd("DATA")[0] == 354
    sender = threading.Thread(target=big.send, args=(folded_header(150_000) + b"\r\n.\r\n",))
    sender.start()  # about 12 MB, while the other client sends its small message
    code, text = send(small, b"From: alice@shop.example\r\nSubject: small\r\n\r\nhi")
    assert code == 250, text
    sender.join()
    assert big.reply() == (552, "5.3.4 Message header section exceeds 262144 octets")
    assert big.cmd("NOOP")[0] == 250  # the session goes on
    for raw in (big, small):
        raw.close()
    with app.app_context():
        assert [m.subject for m in Message.select()] == ["small"]


@pytest.fixture
def few_header_lines(overrides):
    overrides["MAX_HEADER_LINES"] = 50
    return overrides


def test_one_message_stalls_everyone_a_header_over_the_line_count_is_refused_with_554(
    few_header_lines, app, smtp_server, alice
):
    raw = authenticated_raw(smtp_server, *alice)
    assert send(raw, folded_header(48))[0] == 250  # From:, Subject: and 48 continuation lines
    assert send(raw, folded_header(49)) == (554, "5.6.0 Malformed message: the header section has more than 50 lines")
    raw.close()
    assert stored_count(app) == 1


def test_one_message_stalls_everyone_the_message_page_of_a_big_header_message_renders_bounded(app, smtp_server, alice):
    raw = authenticated_raw(smtp_server, *alice)
    many_fields = b"".join(b"X-Field-%04d: " % n + b"v" * 100 + b"\r\n" for n in range(1500))
    code, text = send(raw, b"From: alice@shop.example\r\nSubject: wide\r\n" + many_fields + b"\r\nbody")
    assert code == 250, text
    raw.close()
    message_id = text.removeprefix("Ok: queued as ")
    with app.app_context():
        admins.create(*ADMIN, role="admin")
    client = Dashboard(app.test_client())
    assert client.login(*ADMIN).status_code == 302
    page = client.get(f"/messages/{message_id}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "X-Field-0000" in html and "X-Field-1499" not in html
    assert "more header fields are not shown" in html
    assert len(html) < 200_000  # what the page shows is bounded, whatever the message


def test_one_message_stalls_everyone_header_parsing_is_linear_in_the_folded_lines():
    """Doubling the lines must not quadruple the work: compared by operation counts, not time."""
    fields, body_start = message_bytes.parse_header_block(folded_header(20_000))
    assert [name for name, _ in fields] == ["From", "Subject"]
    assert fields[1][1].startswith("start continued line 000000 ") and fields[1][1].endswith("x" * 56)
    assert len(fields[1][1]) == len("start") + 20_000 * (1 + len("continued line 000000 ") + 56)
    assert body_start == len(folded_header(20_000)) - len(b"body")


# -- finding 4: LF-only messages over about 1 KB ---------------------------------------------------
def lf_only_message(size: int = 2048) -> bytes:
    lines = [b"From: alice@shop.example", b"To: bob@example.com", b"Subject: saved with LF", b""]
    while sum(len(x) + 1 for x in lines) < size:
        lines.append(b"A line of a message saved by an editor with Unix line endings, %04d." % len(lines))
    return b"\n".join(lines) + b"\n"


def test_lf_only_messages_a_2kb_file_through_a_raw_socket_is_accepted_with_crlf(app, smtp_server, alice):
    raw = authenticated_raw(smtp_server, *alice)
    data = lf_only_message()
    code, text = send(raw, data.rstrip(b"\n"))
    assert code == 250, text
    raw.close()
    with app.app_context():
        body = bytes(MessageBody.get_by_id(text.removeprefix("Ok: queued as ")).data)
    assert body.endswith(data.rstrip(b"\n").replace(b"\n", b"\r\n") + b"\r\n")


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is installed by scripts/test.sh")
def test_lf_only_messages_a_2kb_file_through_curl_upload_file_is_accepted(app, smtp_server, alice, tmp_path):
    message = tmp_path / "message.eml"
    message.write_bytes(lf_only_message())
    username, password = alice
    result = subprocess.run(
        [
            "curl",
            "--silent",
            "--show-error",
            "--url",
            f"smtp://relay.test:{smtp_server.starttls_port}",
            "--resolve",
            f"relay.test:{smtp_server.starttls_port}:127.0.0.1",
            "--ssl-reqd",
            "--cacert",
            str(smtp_server.ca),
            "--user",
            f"{username}:{password}",
            "--login-options",
            "AUTH=PLAIN",
            "--mail-from",
            "alice@shop.example",
            "--mail-rcpt",
            "bob@example.com",
            "--upload-file",
            str(message),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    with app.app_context():
        assert [m.subject for m in Message.select()] == ["saved with LF"]
        assert SmtpAccount.get(SmtpAccount.username == username).last_login_at is not None


# -- finding 3: one address takes every slot --------------------------------------------------------
def test_one_address_takes_every_slot_idle_connections_from_one_address_leave_room_for_others(smtp_server):
    idle = [RawSMTP("127.0.0.1", smtp_server.starttls_port, source_ip="127.0.0.2") for _ in range(60)]
    banners = [raw.banner[0] for raw in idle]
    assert banners.count(220) == 50  # MAX_CONNECTIONS_PER_IP, far below MAX_CONNECTIONS (200)
    assert {raw.banner for raw in idle if raw.banner[0] != 220} == {
        (421, "4.7.0 Too many connections from your address, try later")
    }
    for port in (smtp_server.starttls_port, smtp_server.tls_port, smtp_server.mx_port):
        if port == smtp_server.tls_port:
            with smtp_server.implicit() as client:
                assert client.noop()[0] == 250
        else:
            other = RawSMTP("127.0.0.1", port)
            assert other.banner[0] == 220
            other.close()
    for raw in idle:
        raw.close()


@pytest.fixture
def short_first_command(overrides):
    overrides["SMTP_FIRST_COMMAND_TIMEOUT"] = 1
    return overrides


def test_one_address_takes_every_slot_a_client_that_sends_no_command_is_cut_with_421(short_first_command, smtp_server):
    silent = RawSMTP("127.0.0.1", smtp_server.starttls_port, source_ip="127.0.0.2")
    talking = RawSMTP("127.0.0.1", smtp_server.starttls_port)
    assert talking.cmd("EHLO client.test")[0] == 250
    assert silent.reply() == (421, "4.4.2 relay.test Timeout waiting for the client, closing the connection")
    assert silent.closed_by_server()
    assert talking.cmd("NOOP")[0] == 250  # after its first command a client has SMTP_TIMEOUT
    talking.close()


def test_one_address_takes_every_slot_an_implicit_tls_handshake_never_finished_is_dropped(
    short_first_command, smtp_server
):
    stalled = socket.create_connection(("127.0.0.1", smtp_server.tls_port), source_address=("127.0.0.2", 0), timeout=20)
    assert stalled.recv(1) == b""  # closed by the server, not after the client's 20 s
    stalled.close()


# -- finding 6: the lower findings -----------------------------------------------------------------
def test_data_directory_and_database_are_private_when_the_app_creates_them(app, smtp_server, alice):
    data = app.config["DATA_DIR"]
    assert stat.S_IMODE(os.stat(data).st_mode) == 0o700
    raw = authenticated_raw(smtp_server, *alice)
    assert send(raw, b"From: alice@shop.example\r\n\r\nhi")[0] == 250  # a write: the WAL exists
    raw.close()
    if app.config["DATABASE_URL"]:
        return  # PostgreSQL: no database file here
    for name in ("appliance.db", "appliance.db-wal", "appliance.db-shm"):
        assert stat.S_IMODE(os.stat(os.path.join(data, name)).st_mode) == 0o600, name


@pytest.mark.parametrize(
    "rcpt", ["user%example.net@example.com", "example.net!user@example.com", '"user@example.net"@example.com']
)
def test_routing_tricks_in_an_authenticated_rcpt_are_refused(smtp_server, alice, rcpt):
    raw = authenticated_raw(smtp_server, *alice)
    assert raw.cmd("MAIL FROM:<alice@shop.example>")[0] == 250
    assert raw.cmd(f"RCPT TO:<{rcpt}>") == (
        553,
        "5.1.3 Bad recipient address: routing characters (%, !, a quoted local part) are not accepted",
    )
    raw.close()


def test_plaintext_auth_before_tls_touches_no_account_and_no_throttle(app, smtp_server, alice, overrides):
    username, password = alice
    raw = RawSMTP("127.0.0.1", smtp_server.starttls_port)
    raw.cmd("EHLO attacker.example")
    for _ in range(12):  # more than AUTH_FAILURES_PER_IP
        assert raw.cmd(f"AUTH PLAIN {plain(username, 'wrong')}")[0] == 538
    raw.close()
    with app.app_context():
        row = SmtpAccount.get(SmtpAccount.username == username)
    assert (row.last_failure_at, row.last_failure_reason) == (None, None)
    assert authenticated_raw(smtp_server, username, password).cmd("NOOP")[0] == 250


def test_a_second_starttls_inside_tls_gets_503_and_no_traceback(smtp_server, caplog):
    raw = encrypted_raw(smtp_server)
    assert raw.cmd("STARTTLS") == (503, "5.5.1 TLS is already active")
    assert raw.cmd("NOOP")[0] == 250
    raw.close()
    with smtp_server.implicit() as client:
        assert client.docmd("STARTTLS") == (503, b"5.5.1 TLS is already active")
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]


def test_a_client_that_goes_away_after_starttls_leaves_no_traceback(smtp_server, caplog):
    """Found by bench/soak.py: the failed handshake was logged as an SMTP session error."""
    for garbage in (b"", b"not a TLS client hello\r\n"):
        raw = RawSMTP("127.0.0.1", smtp_server.starttls_port)
        raw.cmd("EHLO client.test")
        assert raw.cmd("STARTTLS")[0] == 220
        raw.send(garbage)
        raw.close()
    with smtp_server.submission() as client:  # and the next client is served
        assert client.noop()[0] == 250
    assert not [r for r in caplog.records if r.exc_info or r.levelname == "ERROR"]


@pytest.fixture
def short_timeout(overrides):
    overrides["SMTP_TIMEOUT"] = 2
    return overrides


def test_data_timeout_does_not_cut_a_client_still_sending_and_answers_421_when_it_does(
    short_timeout, app, smtp_server, alice
):
    slow = authenticated_raw(smtp_server, *alice)
    for command in ("MAIL FROM:<alice@shop.example>", "RCPT TO:<bob@example.com>", "DATA"):
        assert slow.cmd(command)[0] in (250, 354)
    slow.send(b"From: alice@shop.example\r\nSubject: slow\r\n\r\n")
    for n in range(10):  # five seconds in all, more than SMTP_TIMEOUT, a line every half second
        time.sleep(0.5)
        slow.send(b"line %d\r\n" % n)
    slow.send(b".\r\n")
    assert slow.reply()[0] == 250
    slow.close()
    stalled = authenticated_raw(smtp_server, *alice)
    for command in ("MAIL FROM:<alice@shop.example>", "RCPT TO:<bob@example.com>", "DATA"):
        stalled.cmd(command)
    stalled.send(b"From: alice@shop.example\r\nSubject: stalled\r\n\r\nand then nothing")
    assert stalled.reply() == (421, "4.4.2 relay.test Timeout waiting for the client, closing the connection")
    assert stalled.closed_by_server()
    with app.app_context():
        assert [m.subject for m in Message.select()] == ["slow"]


@pytest.fixture
def lockout_budgets(overrides):
    overrides.update(AUTH_FAILURES_PER_USERNAME=3, AUTH_FAILURES_PER_IP=6, AUTH_FAILURE_WINDOW=600, AUTH_COOLDOWN=600)
    return overrides


def fail_logins(smtp_server, username: str, times: int, source_ip: str = "127.0.0.2") -> list[int]:
    """Try ``times`` wrong passwords for ``username``, one connection each; return the codes."""
    codes = []
    for _ in range(times):
        raw = encrypted_raw(smtp_server, source_ip)
        codes.append(raw.cmd(f"AUTH PLAIN {plain(username, 'wrong')}")[0])
        raw.close()
    return codes


def login_code(smtp_server, username: str, password: str, source_ip: str = "127.0.0.2") -> int:
    raw = encrypted_raw(smtp_server, source_ip)
    code = raw.cmd(f"AUTH PLAIN {plain(username, password)}")[0]
    raw.close()
    return code


def test_smtp_lockout_one_misconfigured_app_does_not_lock_out_the_other_accounts_behind_its_ip(
    lockout_budgets, app, smtp_server
):
    with app.app_context():
        verify_domain("shop.example")
        broken, broken_password = accounts.create("Misconfigured app")
        other, other_password = accounts.create("Other app")
    codes = fail_logins(smtp_server, broken.username, 10)  # keeps retrying with its old password
    assert codes[:3] == [535, 535, 421] and set(codes[3:]) == {421}  # cooled down after 3
    assert login_code(smtp_server, other.username, other_password) == 235  # same IP, other account
    assert login_code(smtp_server, broken.username, broken_password, source_ip="127.0.0.1") == 235  # elsewhere
    assert login_code(smtp_server, broken.username, broken_password) == 421  # the guesser's pair waits


def test_smtp_lockout_a_spray_over_many_usernames_cools_the_ip_but_not_accounts_that_logged_in_from_it(
    lockout_budgets, app, smtp_server
):
    with app.app_context():
        verify_domain("shop.example")
        known, known_password = accounts.create("Known app")
        fresh, fresh_password = accounts.create("Fresh app")
    assert login_code(smtp_server, known.username, known_password) == 235  # it logged in from here before
    for n in range(6):  # six usernames, one guess each: the per-IP budget
        fail_logins(smtp_server, f"guess-{n}.smtp", 1)
    assert login_code(smtp_server, fresh.username, fresh_password) == 421
    assert login_code(smtp_server, known.username, known_password) == 235
    assert login_code(smtp_server, fresh.username, fresh_password, source_ip="127.0.0.1") == 235


def test_dashboard_sender_addresses_with_markup_are_refused_with_a_form_error(app):
    with app.app_context():
        admins.create(*ADMIN, role="admin")
    client = Dashboard(app.test_client())
    client.login(*ADMIN)
    response = client.form("/senders/", {"address": "a+<svg/onload=alert(1)>@x.example", "verified": "on"})
    assert response.status_code == 400
    html = response.get_data(as_text=True)
    assert "is not an email address: the local part may only have" in html and "<svg/onload" not in html
    with app.app_context():
        assert Sender.select().count() == 0


@pytest.mark.parametrize(
    "address", ["a+<svg/onload=alert(1)>@x.example", "any string", "a b@x.example", "a@x.example\x00"]
)
def test_suppressions_accept_only_addresses_in_the_cli_and_the_dashboard(app, run_cli, address):
    result = run_cli("suppressions", "add", address)
    assert result.exit_code != 0 and "is not an email address" in result.stderr
    with app.app_context():
        admins.create(*ADMIN, role="admin")
    client = Dashboard(app.test_client())
    client.login(*ADMIN)
    response = client.form("/suppressions/", {"address": address})
    assert response.status_code == 400 and "is not an email address" in response.get_data(as_text=True)
    with app.app_context():
        assert Suppression.select().count() == 0


def test_nul_bytes_are_refused_never_relayed_and_never_echoed(app, smtp_server, alice):
    raw = authenticated_raw(smtp_server, *alice)
    assert raw.cmd("MAIL FROM:<ali\0ce@shop.example>") == (
        501,
        "5.5.2 Syntax error: control characters (such as NUL) are not allowed in commands",
    )
    assert raw.cmd("EHLO client\0.test")[0] == 501
    raw.send(b"NO\0OP\r\n")
    echoed = raw.file.readline()
    assert echoed.startswith(b"500 ") and b"\0" not in echoed
    assert send(raw, b"From: alice@shop.example\r\nSubject: nul\r\n\r\nbinary \0 here") == (
        554,
        "5.6.0 Malformed message: NUL bytes are not allowed (RFC 5322 2.3)",
    )
    assert raw.cmd("NOOP")[0] == 250
    raw.close()
    assert stored_count(app) == 0
