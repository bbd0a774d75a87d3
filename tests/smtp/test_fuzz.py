"""Property-based fuzzing of the SMTP session and of MIME intake (Hypothesis), over real sockets.

One appliance runs for the whole module. Invariants, for every example: no traceback (nor any
ERROR record) in the server's log; every reply a syntactically valid SMTP reply; no half-stored
message; a message is either refused (nothing stored) or stored exactly as normalised.

The number of examples comes from the Hypothesis profile (tests/conftest.py): ``ci`` by default,
``--hypothesis-profile=long`` or ``FUZZ_EXAMPLES=N`` on demand (docs/security.md).
A crash found here is kept as a named regression test at the end of this module.
"""

from __future__ import annotations

import contextlib
import email.message
import email.policy
import logging
import re
import socket
import ssl

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance import accounts, create_app, intake, message_bytes
from appliance.message_bytes import has_long_line
from appliance.models import Delivery, Message, MessageBody
from appliance.serve import start_smtp
from tests.support.ports import free_port
from tests.support.relay import HOSTNAME, verify_domain

# RFC 5321 §4.2: a reply line is a three-digit code 2xx-5xx, then SP (last line) or "-" (more lines).
_REPLY_LINE = re.compile(rb"[2-5][0-5][0-9](?:[ -][\x20-\x7e\x80-\xff]*)?\Z")

fuzz_settings = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


class Problems(logging.Handler):
    """Collect what the server logs with a traceback, or at ERROR and above."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.levelno >= logging.ERROR:
            self.records.append(record)

    def take(self) -> list[str]:
        found = [self.format(r) for r in self.records]
        self.records.clear()
        return found


class Appliance:
    def __init__(self, app, service, ports: dict[str, int], ca: str, problems: Problems):
        self.app, self.service, self.ports, self.ca, self.problems = app, service, ports, ca, problems

    def connect(self, port: str, *, tls: bool = False) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.ports[port]), timeout=20)
        if tls:
            sock = ssl.create_default_context(cafile=self.ca).wrap_socket(sock, server_hostname=HOSTNAME)
        return sock

    def counts(self) -> tuple[int, int, int]:
        with self.app.app_context():
            return Message.select().count(), MessageBody.select().count(), Delivery.select().count()

    def check_nothing_half_stored(self) -> None:
        """Every message has its body, and an outbound one a delivery per recipient."""
        with self.app.app_context():
            bodies = {b.message_id for b in MessageBody.select(MessageBody.message)}
            for message in Message.select():
                assert message.id in bodies, f"message {message.id} without its body"
                if message.direction == "outbound":
                    count = Delivery.select().where(Delivery.message == message.id).count()
                    assert count == message.rcpt_count, f"message {message.id}: {count} deliveries"


@pytest.fixture(scope="module")
def appliance(tmp_path_factory):
    ports = {"starttls": free_port(), "tls": free_port(), "mx": free_port()}
    app = create_app(
        {
            "DATA_DIR": str(tmp_path_factory.mktemp("fuzz") / "data"),
            "HOSTNAME": HOSTNAME,
            "WEB_LISTEN": f"127.0.0.1:{free_port()}",
            "DNS_SERVERS": "127.0.0.1:9",
            "SMTP_TIMEOUT": 30,
            "SMTP_LISTEN": f"127.0.0.1:{ports['starttls']}/starttls,127.0.0.1:{ports['tls']}/tls,"
            f"127.0.0.1:{ports['mx']}/starttls/mx",
        }
    )
    with app.app_context():
        verify_domain("shop.test")
        # Mail from loopback needs no AUTH on the submission ports, so random sessions reach DATA.
        accounts.create("Fuzz", networks=["127.0.0.0/8"], ip_only=True)
    problems = Problems()
    logging.getLogger().addHandler(problems)
    service, files = start_smtp(app.config)
    yield Appliance(app, service, ports, str(files.ca), problems)
    service.stop()
    logging.getLogger().removeHandler(problems)


def read_replies(sock: socket.socket) -> tuple[list[bytes], bool]:
    """Read until the server closes the connection; return the reply lines, and whether the
    connection was reset. A server that closes with the client's pipelined commands still unread
    makes its kernel answer them with a reset, and a reset throws away what the client had not read
    yet: the last reply (the 421 of too many bad commands) may be lost on the way."""
    data = b""
    reset = False
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionError, ssl.SSLError):
        reset = True
    except TimeoutError:
        pass
    return data.split(b"\r\n"), reset


def assert_valid_replies(lines: list[bytes]) -> None:
    """Every line a valid reply line, nothing after the final CRLF, continuations keep their code."""
    assert lines and lines[-1] == b"", f"the reply does not end with CRLF: {lines[-1:]!r}"
    previous = None
    for line in lines[:-1]:
        assert _REPLY_LINE.match(line), f"not an SMTP reply line: {line!r}"
        if previous is not None and previous[3:4] == b"-":
            assert line[:3] == previous[:3], f"a continuation changed its code: {previous!r} {line!r}"
        previous = line


def check_invariants(appliance: Appliance, lines: list[bytes]) -> None:
    assert_valid_replies(lines)
    assert appliance.problems.take() == []
    appliance.check_nothing_half_stored()


# -- the SMTP session ---------------------------------------------------------------------------
COMMANDS = st.sampled_from(
    [
        b"EHLO client.test",
        b"HELO client.test",
        b"EHLO",
        b"EHLO [127.0.0.1]",
        b"MAIL FROM:<a@shop.test>",
        b"MAIL FROM:<>",
        b"MAIL FROM:<a@shop.test> SIZE=100 BODY=8BITMIME",
        b"MAIL FROM:<bad",
        b"MAIL FROM:a@shop.test",
        b"MAIL TO:<a@shop.test>",
        b"MAIL FROM:<a@shop.test> SIZE=x",
        b"RCPT TO:<b@example.com>",
        b"RCPT TO:<postmaster@relay.test>",
        b"RCPT TO:<a%b@relay.test>",
        b"RCPT TO:<>",
        b'RCPT TO:<"q@x"@relay.test>',
        b"RCPT TO:<b@[127.0.0.1]>",
        b"DATA",
        b"RSET",
        b"NOOP",
        b"NOOP hello",
        b"VRFY postmaster",
        b"EXPN list",
        b"HELP",
        b"HELP MAIL",
        b"AUTH PLAIN AGFAYg==",
        b"AUTH LOGIN",
        b"AUTH CRAM-MD5",
        b"BDAT 10",
        b"ETRN relay.test",
        b".",
        b"..",
        b"",
        b" ",
        b"From: a@shop.test",
        b"Subject: hi",
        b"body line",
        b"\x00",
        b"MA\x00IL FROM:<a@shop.test>",
        b"\xff\xfe",
        b"x" * 600,
        b"RCPT TO:<" + b"y" * 300 + b"@relay.test>",
    ]
)
EOLS = st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n", b"\r", b"\n\r", b""])


@st.composite
def sessions(draw) -> tuple[bytes, list[int]]:
    """A burst of commands with random line endings, and the positions it is split at."""
    lines = draw(st.lists(st.tuples(COMMANDS, EOLS), max_size=25))
    burst = b"".join(command + eol for command, eol in lines)
    cuts = sorted(set(draw(st.lists(st.integers(0, max(len(burst), 1)), max_size=6))))
    return burst, cuts


def run_session(appliance: Appliance, port: str, burst: bytes, cuts: list[int], *, tls: bool = False) -> list[bytes]:
    """Send ``burst`` in the pieces ``cuts`` makes (pipelined), end any DATA, QUIT; return the replies."""
    sock = appliance.connect(port, tls=tls)
    pieces = [burst[a:b] for a, b in zip([0, *cuts], [*cuts, len(burst)], strict=True) if b > a]
    # Whatever state the burst left: end a DATA, leave an AUTH exchange, and say goodbye.
    pieces.append(b"\r\n.\r\n*\r\nQUIT\r\n")
    closed_early = False
    try:
        for piece in pieces:
            sock.sendall(piece)
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
        closed_early = True  # the server closed first (too many bad commands)
    lines, reset = read_replies(sock)
    sock.close()
    if closed_early or reset:  # the reset may have cut what the server sent: check the whole lines only
        return [*lines[:-1], b""]
    assert any(line[:4] in (b"221 ", b"421 ") for line in lines), lines[-5:]
    return lines


@fuzz_settings
@given(session=sessions(), port=st.sampled_from(["starttls", "mx"]))
def test_fuzz_smtp_session_random_commands_pipelined_with_random_line_endings(appliance, session, port):
    burst, cuts = session
    check_invariants(appliance, run_session(appliance, port, burst, cuts))


@fuzz_settings
@given(session=sessions())
def test_fuzz_smtp_session_over_implicit_tls(appliance, session):
    burst, cuts = session
    check_invariants(appliance, run_session(appliance, "tls", burst, cuts, tls=True))


A_SESSION = (
    b"EHLO client.test\r\nMAIL FROM:<a@shop.test>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
    b"From: a@shop.test\r\nSubject: split\r\n\r\n.dotted\r\nbody\r\n.\r\nRSET\r\n"
)


def test_fuzz_smtp_session_split_at_every_position(appliance):
    """The same session cut in two at each of its positions gets the same replies every time."""
    before = appliance.counts()[0]
    expected = None
    for cut in range(len(A_SESSION) + 1):
        lines = run_session(appliance, "starttls", A_SESSION, [cut])
        check_invariants(appliance, lines)
        codes = [line[:4] for line in lines if line]
        expected = expected or codes
        assert codes == expected, f"split at {cut}: {codes} != {expected}"
    data = expected.index(b"354 ")
    assert expected[0] == b"220 " and expected[data + 1] == b"250 "  # the message is accepted each time
    assert appliance.counts()[0] == before + len(A_SESSION) + 1


# -- MIME intake ---------------------------------------------------------------------------------
def _real_messages() -> list[bytes]:
    plain = (
        b"From: Shop <a@shop.test>\r\nTo: b@example.com\r\nSubject: Your order\r\n"
        b"Message-ID: <1@shop.test>\r\nDate: Mon, 2 Nov 2026 10:00:00 +0000\r\n\r\n"
        b"Thank you for your order.\r\n.a line with a dot\r\n\r\nRegards\r\n"
    )
    rich = email.message.EmailMessage(policy=email.policy.SMTP)
    rich["From"] = '"Café Shop" <a@shop.test>'
    rich["To"] = "Zoë <zoe@example.com>, b@example.com"
    rich["Subject"] = "Ünïcode subject that is long enough to be folded by the email package, surely"
    rich.set_content("Hello in plain text,\nwith two lines.\n")
    rich.add_alternative("<p>Hello in <b>HTML</b></p>\n", subtype="html")
    rich.add_attachment(bytes(range(256)) * 8, maintype="application", subtype="octet-stream", filename="data.bin")
    traced = (
        b"Received: from mx.example.net (mx.example.net [192.0.2.1])\r\n\tby relay.test with ESMTPS;\r\n"
        b"\tMon, 2 Nov 2026 10:00:00 +0000\r\n"
        b"DKIM-Signature: v=1; a=rsa-sha256; d=shop.test; s=s1;\r\n\th=from:to:subject;\r\n"
        b"\tbh=47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=; b=abc\r\n\tdef\r\n"
        b"From: a@shop.test\r\nSubject: =?utf-8?q?caf=C3=A9?=\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 =\r\nsoft break\r\n"
    )
    return [plain, rich.as_bytes(), traced]


REAL_MESSAGES = _real_messages()  # built once: the email package draws MIME boundaries from `random`


PIECES = st.sampled_from(
    [
        b"\r",
        b"\n",
        b"\r\n",
        b".",
        b"\r\n.\r\n",
        b"\r\n.",
        b"\x00",
        b":",
        b" ",
        b"\t",
        b"From: x@y.test\r\n",
        b"Sender: s@shop.test\r\n",
        b"=?utf-8?b?",
        b"\xff",
        b"--",
        b"\r\n\r\n",
        b"Subject",
        b"x" * 1200,
    ]
)


@st.composite
def mutated_messages(draw) -> bytes:
    """A real message with a few insertions, deletions, replacements and duplicated lines."""
    data = bytearray(draw(st.sampled_from(REAL_MESSAGES)))
    for _ in range(draw(st.integers(0, 6))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        if op == "insert":
            data[at:at] = draw(st.one_of(PIECES, st.binary(max_size=12)))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 40))]
        elif op == "replace":
            data[at : at + 1] = draw(st.one_of(PIECES, st.binary(min_size=1, max_size=3)))
        else:
            start = data.rfind(b"\n", 0, at) + 1
            end = data.find(b"\n", at)
            line = bytes(data[start : (len(data) if end < 0 else end + 1)])
            data[start:start] = line
    return bytes(data)


def submit(appliance: Appliance, content: bytes) -> tuple[bytes, list[bytes]]:
    """Send ``content`` as a client would (dot-stuffed, ended by CRLF.CRLF) to the MX port, for a
    local recipient (stored as received: no sender rules stand between the message and intake)."""
    stuffed = (b"." + content if content.startswith(b".") else content).replace(b"\r\n.", b"\r\n..")
    burst = (
        b"EHLO fuzz.test\r\nMAIL FROM:<a@shop.test>\r\nRCPT TO:<postmaster@relay.test>\r\nDATA\r\n"
        + stuffed
        + (b"" if stuffed.endswith(b"\r\n") else b"\r\n")
        + b".\r\nQUIT\r\n"
    )
    sock = appliance.connect("mx")
    try:
        sock.sendall(burst)
        lines, _ = read_replies(sock)
    finally:
        sock.close()
    replies = [line for line in lines if line and line[3:4] == b" "]
    assert [r[:3] for r in replies[:4]] == [b"220", b"250", b"250", b"250"] and replies[4][:3] == b"354", replies
    return replies[5], lines


def check_outcome(appliance: Appliance, content: bytes, reply: bytes, before: int) -> None:
    """Refused with nothing stored, or stored as exactly the normalised bytes after our trace fields."""
    normalised = message_bytes.normalise_line_endings(content if content.endswith(b"\r\n") else content + b"\r\n")
    code = int(reply[:3])
    if has_long_line(normalised):
        assert reply.startswith(b"500 5.5.2 "), reply
    elif b"\x00" in normalised:
        assert reply.startswith(b"554 5.6.0 "), reply
    assert code == 250 or 500 <= code <= 554, reply  # never a temporary failure of ours
    with appliance.app.app_context():
        if code != 250:
            assert Message.select().count() == before, reply
            return
        message_id = reply.split()[-1].decode()
        stored = bytes(MessageBody.get_by_id(message_id).data)
    assert stored.endswith(normalised)
    added = stored[: len(stored) - len(normalised)]
    assert added.startswith(b"Received: from fuzz.test ([127.0.0.1])\r\n")
    for line in added.removesuffix(b"\r\n").split(b"\r\n"):
        assert line.startswith((b"Received: ", b"\t", b"Message-ID: ", b"Date: ")), added


def submit_and_check(appliance: Appliance, content: bytes) -> bytes:
    """Send one message, check the session's invariants and the outcome; return the DATA reply."""
    before = appliance.counts()[0]
    reply, lines = submit(appliance, content)
    check_invariants(appliance, lines)
    check_outcome(appliance, content, reply, before)
    return reply


@fuzz_settings
@given(content=mutated_messages())
def test_fuzz_mime_intake_mutated_real_messages(appliance, content):
    submit_and_check(appliance, content)


@fuzz_settings
@given(content=st.binary(max_size=600) | st.lists(st.one_of(PIECES, st.binary(max_size=20))).map(b"".join))
def test_fuzz_mime_intake_random_bytes(appliance, content):
    submit_and_check(appliance, content)


@fuzz_settings
@given(content=mutated_messages() | st.binary(max_size=400))
def test_fuzz_intake_prepare_raises_only_malformed_message(content):
    """In process: prepare either returns or says why the message is malformed."""
    try:
        item = intake.prepare(
            content,
            mail_from="",
            rcpts=["b@example.com"],
            hostname=HOSTNAME,
            client_ip="127.0.0.1",
            client_helo="fuzz.test",
            tls="",
            username=None,
            account_id=None,
            account_priority=3,
        )
    except message_bytes.MalformedMessage:
        return
    assert item.data.endswith(message_bytes.normalise_line_endings(content))
    assert item.from_addresses is not None and 1 <= item.priority <= 5


# -- crashes the fuzzers found, kept as regression tests ---------------------------------------------
def test_fuzz_found_commands_pipelined_after_the_server_closes_a_tls_session_raise_no_traceback(appliance):
    """aiosmtpd went on running pipelined commands after its goodbye, and writing their replies to
    the closed TLS transport raised AttributeError (logged as a session error, and again for the
    451 it then tried to send)."""
    burst = b"EHLO fuzz.test\r\n" + b"BOGUS\r\n" * 6 + b"HELP\r\nNOOP\r\n" * 20
    sock = appliance.connect("tls", tls=True)
    with contextlib.suppress(ConnectionError, ssl.SSLError):
        sock.sendall(burst)
    lines, _ = read_replies(sock)
    sock.close()
    assert b"421 4.7.0 Too many unrecognized commands, closing the connection" in lines
    assert lines[-2].startswith(b"421 ") and b"250 Supported commands" not in b"\n".join(lines)
    assert appliance.problems.take() == []


def test_fuzz_found_an_encoded_word_with_a_non_ascii_charset_name_is_stored_with_the_subject_as_written(appliance):
    """``=?\x80utf-8?b?…?=`` in a Subject: raised email.errors.CharsetError (not a ValueError) on
    the writer thread: a traceback and 451 instead of the message."""
    content = b"From: a@shop.test\r\nSubject: =?\x80utf-8?b?w5xuw69jb2Rl?= subject\r\n\r\nhi\r\n"
    reply = submit_and_check(appliance, content)
    assert reply.startswith(b"250 "), reply
    with appliance.app.app_context():
        assert Message.get_by_id(reply.split()[-1].decode()).subject == "=?\ufffdutf-8?b?w5xuw69jb2Rl?= subject"
